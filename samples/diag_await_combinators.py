"""await-cycle through combinators: rings whose await edges pass through a
gather, a TaskGroup and a shield. One event loop, idle in its selector once
settled; no timers, no descriptors but the self-pipe, no other Python
thread.

gather-a    `await asyncio.gather(peers["gather-b"])`: waits on the
            _GatheringFuture `g`, whose only child is gather-b
gather-b    awaits gather-a directly
tg-parent   `async with asyncio.TaskGroup() as tg:` creating tg-child, then
            waits in TaskGroup.__aexit__ (3.14+: _aexit) on the TaskGroup
            `tg`, whose only task is tg-child
tg-child    awaits tg-parent directly (its own parent)
shield-a    `await asyncio.shield(peers["shield-b"])`: waits on the outer
            future `outer` of the shield, whose inner task is shield-b
shield-b    awaits shield-a directly
Task-N      the asyncio.run main task: awaits a bare future only it
            references

Expected diagnoses (exactly; the combinator on each ring is its resource):
  await-cycle  tasks [gather-a, gather-b]     resources [g]
  await-cycle  tasks [tg-parent, tg-child]    resources [tg]
  await-cycle  tasks [shield-a, shield-b]     resources [outer]
  all-asleep   tasks [Task-N and the 6 above] resources []
Exit status 1. The text report starts "Found 3 asyncio deadlocks".
Run: python3 diag_await_combinators.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()


async def direct(peers, nxt):
    await peers[nxt]


async def gather_a(peers):
    g = asyncio.gather(peers["gather-b"])
    me = asyncio.current_task()
    T.expect(me, "gather", g)
    T.expect_diagnosis("await-cycle", [me, peers["gather-b"]], [g])
    await g


async def tg_parent(peers):
    me = asyncio.current_task()
    async with asyncio.TaskGroup() as tg:
        child = tg.create_task(direct(peers, "tg-parent"), name="tg-child")
        T.expect(child, "task", me)
        T.expect(me, "taskgroup", tg)
        T.expect_diagnosis("await-cycle", [me, child], [tg])


async def shield_a(peers):
    outer = asyncio.shield(peers["shield-b"])
    me = asyncio.current_task()
    T.expect(me, "shield", outer)
    T.expect_diagnosis("await-cycle", [me, peers["shield-b"]], [outer])
    await outer


async def main():
    peers = {}
    peers["gather-a"] = asyncio.create_task(gather_a(peers), name="gather-a")
    peers["gather-b"] = asyncio.create_task(direct(peers, "gather-a"), name="gather-b")
    peers["tg-parent"] = asyncio.create_task(tg_parent(peers), name="tg-parent")
    peers["shield-a"] = asyncio.create_task(shield_a(peers), name="shield-a")
    peers["shield-b"] = asyncio.create_task(direct(peers, "shield-a"), name="shield-b")
    T.expect(peers["gather-b"], "task", peers["gather-a"])
    T.expect(peers["shield-b"], "task", peers["shield-a"])
    T.keep.append(peers)
    forever = asyncio.get_running_loop().create_future()
    T.expect(asyncio.current_task(), "future")
    T.expect_all_asleep()
    T.record_when_idle()
    await forever


if __name__ == "__main__":
    asyncio.run(main())
