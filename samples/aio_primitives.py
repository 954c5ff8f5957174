"""Tasks waiting on every asyncio synchronization primitive, a bare future
and a long sleep. One event loop, idle in its selector once settled.

lock-holder   holds `lock` (inside `async with lock`), awaits a bare future
lock-waiter   `async with lock`: in Lock.acquire, waits on the lock
sem-holder    holds the Semaphore(1) `sem`, awaits a bare future
sem-waiter    `async with sem`: in Semaphore.acquire, waits on the semaphore
cond-waiter   `async with cond: await cond.wait()`: waits on the condition
event-waiter  `await event.wait()`
getter        `await queue.get()` on an empty Queue
putter        `await full.put(2)` on a Queue(maxsize=1) holding one item
barrier-1/-2  `await barrier.wait()` on a Barrier(3): in Condition.wait of the
              barrier's own condition, waits on the barrier
future-waiter `await fut`, a Future nobody resolves
sleeper       `await asyncio.sleep(3600)`: the deadline is loop.time() + 3600
              at the call (the sleep's TimerHandle)
Task-N        the asyncio.run main task: awaits the bare future `forever`

snarl must report each task's chain (Lock.acquire and
_ContextManagerMixin.__aenter__, Semaphore.acquire, Condition.wait,
Condition.wait_for and Barrier._wait/Barrier.wait, Event.wait, Queue.get,
Queue.put, sleep), the primitive each waits on with that primitive's id,
and the waiters of each resource.
Run: python3 aio_primitives.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import aio_truth

T = aio_truth.Truth()


async def hold(prim, fut):
    async with prim:
        await fut


async def take(prim):
    async with prim:
        pass


async def cond_wait(cond):
    async with cond:
        await cond.wait()


async def event_wait(event):
    await event.wait()


async def get(queue):
    await queue.get()


async def put(queue):
    await queue.put(2)


async def barrier_wait(barrier):
    await barrier.wait()


async def future_wait(fut):
    await fut


async def sleeper():
    await asyncio.sleep(3600)


async def main():
    loop = asyncio.get_running_loop()
    lock, sem, cond = asyncio.Lock(), asyncio.Semaphore(1), asyncio.Condition()
    event, queue, full = asyncio.Event(), asyncio.Queue(), asyncio.Queue(maxsize=1)
    full.put_nowait(1)
    barrier = asyncio.Barrier(3)
    lock_hold, sem_hold, bare, forever = (loop.create_future() for _ in range(4))

    def task(coro, name, kind, obj=None):
        t = asyncio.create_task(coro, name=name)
        T.expect(t, kind, obj)
        return t

    tasks = [
        task(hold(lock, lock_hold), "lock-holder", "future", lock_hold),
        task(hold(sem, sem_hold), "sem-holder", "future", sem_hold),
    ]
    await asyncio.sleep(0)  # the holders own lock and sem from here on
    tasks += [
        task(take(lock), "lock-waiter", "lock", lock),
        task(take(sem), "sem-waiter", "semaphore", sem),
        task(cond_wait(cond), "cond-waiter", "condition", cond),
        task(event_wait(event), "event-waiter", "event", event),
        task(get(queue), "getter", "queue", queue),
        task(put(full), "putter", "queue", full),
        task(barrier_wait(barrier), "barrier-1", "barrier", barrier),
        task(barrier_wait(barrier), "barrier-2", "barrier", barrier),
        task(future_wait(bare), "future-waiter", "future", bare),
        task(sleeper(), "sleeper", "sleep"),
    ]
    T.expect(asyncio.current_task(), "future", forever)
    T.keep += [lock, sem, cond, event, queue, full, barrier, lock_hold, sem_hold, bare,
               forever] + tasks
    T.record_when_idle()
    await forever


if __name__ == "__main__":
    # Debug mode: tasks keep their creation site, which snarl must report.
    asyncio.run(main(), debug=True)
