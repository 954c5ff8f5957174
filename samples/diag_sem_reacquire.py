"""lock-reacquire with semaphores: a task that holds every slot of an
asyncio.Semaphore waits to acquire it once more; and, for contrast, a task
that waits again on a semaphore whose other slot another task holds. One
event loop, idle in its selector once settled; no timers, no descriptors
but the self-pipe, no other Python thread.

sem1-again    `async with s1: async with s1:` on Semaphore(1) `s1`: holds
              its only slot, waits on s1 in Semaphore.acquire
sem2-twice    `async with s2: async with s2: async with s2:` on
              Semaphore(2) `s2`: holds both slots, waits for a third
shared-holder `async with s3:` on Semaphore(2) `s3`, then awaits a bare
              future only it references (holds one slot of s3 for good)
shared-again  `async with s3: async with s3:`: holds the other slot of s3
              and waits on s3. Not lock-reacquire: another task holds a
              slot of s3 and releasing it would let shared-again through;
              that nothing can wake shared-holder is all-asleep's finding
Task-N        the asyncio.run main task: awaits gather(all four)

Decision: a semaphore counts as re-acquired when the waiter itself holds
every slot (no other holder), as a Lock does with its single holder.

Expected diagnoses (exactly):
  lock-reacquire  tasks [sem1-again]   resources [s1]
  lock-reacquire  tasks [sem2-twice]   resources [s2]
  all-asleep      tasks [Task-N, sem1-again, sem2-twice, shared-holder,
                         shared-again]                   resources []
Exit status 1. The text report starts "Found 2 asyncio deadlocks".
Run: python3 diag_sem_reacquire.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()


async def twice(sem):
    async with sem:
        T.held(sem)
        async with sem:
            pass


async def thrice(sem):
    async with sem:
        T.held(sem)
        async with sem:
            async with sem:
                pass


async def hold(sem):
    never = asyncio.get_running_loop().create_future()
    async with sem:
        T.held(sem)
        await never


def start():
    """The semaphores and the future exist only in the tasks' frames."""
    s1, s2, s3 = asyncio.Semaphore(1), asyncio.Semaphore(2), asyncio.Semaphore(2)
    a = asyncio.create_task(twice(s1), name="sem1-again")
    b = asyncio.create_task(thrice(s2), name="sem2-twice")
    h = asyncio.create_task(hold(s3), name="shared-holder")
    c = asyncio.create_task(twice(s3), name="shared-again")
    for t in (a, b, c):
        T.expect(t, "semaphore")
    T.expect(h, "future")
    T.expect_diagnosis("lock-reacquire", [a], [s1])
    T.expect_diagnosis("lock-reacquire", [b], [s2])
    return [a, b, h, c]


async def main():
    gathering = asyncio.gather(*start())
    T.expect(asyncio.current_task(), "gather", gathering)
    T.expect_all_asleep()
    T.record_when_idle()
    await gathering


if __name__ == "__main__":
    asyncio.run(main())
