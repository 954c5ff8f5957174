"""Healthy: locks in ordinary use. Tasks take and release a Lock in a
loop (`async with` and explicit acquire()/release()), sampled between
iterations while the lock is free; and a contended Lock and Semaphore(1)
whose holders sleep on timers while others queue for them. One event
loop, idle in its selector once settled.

cycler-0 .. cycler-2   `while True: async with lock: ...; await
                       asyncio.sleep(3600)`: asleep outside the lock,
                       which is free
explicit               `await lock.acquire()` ... `lock.release()` in a
                       loop, asleep (3600 s) with the lock released
holder                 `async with busy:` then asyncio.sleep(3600): holds
                       busy until its timer fires
queued-0, queued-1     `async with busy:`: wait on busy
sem-holder             `async with sem:` (Semaphore(1)) then sleeps 3600 s
sem-queued             `async with sem:`: waits on sem
Task-N                 the asyncio.run main task: awaits gather(all)

No lock is held by a task waiting on it or on a ring; every holder will
wake on its timer.

Expected diagnoses: none. Exit status 0.
Run: python3 diag_healthy_locks.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()
ROUNDS = 3


async def cycler(lock, counts):
    while True:
        for _ in range(ROUNDS):
            async with lock:
                counts.append(1)
                await asyncio.sleep(0)
        await asyncio.sleep(3600)


async def explicit(lock, counts):
    while True:
        await lock.acquire()
        try:
            counts.append(1)
            await asyncio.sleep(0)
        finally:
            lock.release()
        await asyncio.sleep(3600)


async def hold(prim):
    async with prim:
        T.held(prim)
        await asyncio.sleep(3600)


async def take(prim):
    async with prim:
        pass


async def main():
    lock, busy, sem = asyncio.Lock(), asyncio.Lock(), asyncio.Semaphore(1)
    counts = []
    tasks = []

    def task(coro, name, kind, obj=None):
        t = asyncio.create_task(coro, name=name)
        T.expect(t, kind, obj)
        tasks.append(t)

    for i in range(3):
        task(cycler(lock, counts), "cycler-%d" % i, "sleep")
    task(explicit(lock, counts), "explicit", "sleep")
    task(hold(busy), "holder", "sleep")
    task(hold(sem), "sem-holder", "sleep")
    await asyncio.sleep(0)  # the holders own busy and sem from here on
    task(take(busy), "queued-0", "lock", busy)
    task(take(busy), "queued-1", "lock", busy)
    task(take(sem), "sem-queued", "semaphore", sem)
    gathering = asyncio.gather(*tasks)
    T.expect(asyncio.current_task(), "gather", gathering)
    T.keep += [lock, busy, sem]
    T.record_when_idle()
    await gathering


if __name__ == "__main__":
    asyncio.run(main())
