"""lock-cycle: lock-order deadlocks. One event loop, idle in its selector
once settled; no timers, no descriptors but the self-pipe, no other Python
thread.

pair-a     `async with l1:` ... `async with l2:`: holds l1, waits on l2
pair-b     `async with l2:` ... `async with l1:`: holds l2, waits on l1
trio-a     holds m1, waits on m2
trio-b     holds m2, waits on m3
trio-c     holds m3, waits on m1
mixed-a    holds the Semaphore(1) `ms`, waits on the Lock `ml`
mixed-b    holds `ml`, waits on `ms`
bystander  `async with l1:`: waits on l1 (held by pair-a) but holds
           nothing: it waits on the cycle without being part of it
Task-N     the asyncio.run main task: awaits gather(all of the above)

Each task takes its first lock, yields once (asyncio.sleep(0)) so that
every task holds its first lock, then asks for the second.

Expected diagnoses (exactly; one per cycle):
  lock-cycle  tasks [pair-a, pair-b]           resources [l1, l2]
  lock-cycle  tasks [trio-a, trio-b, trio-c]   resources [m1, m2, m3]
  lock-cycle  tasks [mixed-a, mixed-b]         resources [ms, ml]
  all-asleep  tasks [Task-N and the 8 above]   resources []
Exit status 1. The text report starts "Found 3 asyncio deadlocks".
Run: python3 diag_lock_cycle.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()


async def ordered(first, second):
    async with first:
        T.held(first)
        await asyncio.sleep(0)
        async with second:
            pass


async def bystander(lock):
    await asyncio.sleep(0)
    async with lock:
        pass


def start():
    """The locks exist only in the tasks' frames."""
    l1, l2 = asyncio.Lock(), asyncio.Lock()
    m1, m2, m3 = asyncio.Lock(), asyncio.Lock(), asyncio.Lock()
    ms, ml = asyncio.Semaphore(1), asyncio.Lock()

    def task(coro, name, kind):
        t = asyncio.create_task(coro, name=name)
        T.expect(t, kind)
        return t

    pa = task(ordered(l1, l2), "pair-a", "lock")
    pb = task(ordered(l2, l1), "pair-b", "lock")
    ta = task(ordered(m1, m2), "trio-a", "lock")
    tb = task(ordered(m2, m3), "trio-b", "lock")
    tc = task(ordered(m3, m1), "trio-c", "lock")
    ma = task(ordered(ms, ml), "mixed-a", "lock")
    mb = task(ordered(ml, ms), "mixed-b", "semaphore")
    by = task(bystander(l1), "bystander", "lock")
    T.expect_diagnosis("lock-cycle", [pa, pb], [l1, l2])
    T.expect_diagnosis("lock-cycle", [ta, tb, tc], [m1, m2, m3])
    T.expect_diagnosis("lock-cycle", [ma, mb], [ms, ml])
    return [pa, pb, ta, tb, tc, ma, mb, by]


async def main():
    gathering = asyncio.gather(*start())
    T.expect(asyncio.current_task(), "gather", gathering)
    T.expect_all_asleep()
    T.record_when_idle()
    await gathering


if __name__ == "__main__":
    asyncio.run(main())
