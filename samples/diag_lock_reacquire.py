"""lock-reacquire: a task re-enters `async with lock` on the asyncio.Lock it
already holds (asyncio.Lock is not reentrant). One event loop, idle in its
selector once settled; no timers, no descriptors but the self-pipe, no
other Python thread.

reenter      `async with lock:` then calls again(lock), whose own
             `async with lock:` waits in Lock.acquire on the lock it holds
bystander    `async with lock:` too: waits on the lock, held by reenter;
             it is not part of the cycle
Task-N       the asyncio.run main task: awaits reenter directly

Expected diagnoses (exactly):
  lock-reacquire  tasks [reenter]                      resources [lock]
  all-asleep      tasks [Task-N, reenter, bystander]   resources []
Exit status 1. The text report starts "Found 1 asyncio deadlock".
Run: python3 diag_lock_reacquire.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()


async def again(lock):
    async with lock:
        pass


async def reenter(lock):
    async with lock:
        T.held(lock)
        await again(lock)


async def bystander(lock):
    async with lock:
        pass


def start():
    """Creates the lock here so that only the tasks' frames reference it."""
    lock = asyncio.Lock()
    r = asyncio.create_task(reenter(lock), name="reenter")
    b = asyncio.create_task(bystander(lock), name="bystander")
    T.expect(r, "lock")
    T.expect(b, "lock")
    T.expect_diagnosis("lock-reacquire", [r], [lock])
    return r


async def main():
    r = start()
    T.expect(asyncio.current_task(), "task", r)
    T.expect_all_asleep()
    T.record_when_idle()
    await r


if __name__ == "__main__":
    asyncio.run(main())
