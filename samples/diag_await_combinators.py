"""await-cycle through combinators: rings whose await edges pass through a
gather, a TaskGroup, a shield and asyncio.wait. One event loop, idle in its
selector once settled; no timers, no descriptors but the self-pipe, no
other Python thread.

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
wait-all    `await asyncio.wait([peers["wait-all-b"]])`: waits on its
            helper's waiter future `w_all` (ALL_COMPLETED), whose only
            member is wait-all-b
wait-all-b  awaits wait-all directly
wait-any    `await asyncio.wait([peers["wait-any-b"]],
            return_when=FIRST_COMPLETED)`: `w_any`, its only member on the
            ring
wait-any-b  awaits wait-any directly
wait-open   `await asyncio.wait([peers["wait-open-b"], peers["lone"]],
            return_when=FIRST_COMPLETED)`: `lone` ending would wake it and
            lone is on no ring, so this ring is not closed: no await-cycle
wait-open-b awaits wait-open directly
lone        awaits a bare future only it references
gather-open `await asyncio.gather(peers["gather-open-b"], peers["lone"])`:
            an error of lone would end the gather, so this ring is not
            closed either: no await-cycle
gather-open-b awaits gather-open directly
tg-open     a TaskGroup of tg-open-child, which awaits tg-open, and
            tg-open-lone, which awaits a bare future only it references:
            an error of tg-open-lone would cancel the rest, no await-cycle
Task-N      the asyncio.run main task: awaits a bare future only it
            references

Expected diagnoses (exactly; the combinator on each ring is its resource):
  await-cycle  tasks [gather-a, gather-b]     resources [g]
  await-cycle  tasks [tg-parent, tg-child]    resources [tg]
  await-cycle  tasks [shield-a, shield-b]     resources [outer]
  await-cycle  tasks [wait-all, wait-all-b]   resources [w_all]
  await-cycle  tasks [wait-any, wait-any-b]   resources [w_any]
  all-asleep   tasks [Task-N and the 18 above] resources []
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


async def waits(peers, names, return_when):
    await asyncio.wait([peers[n] for n in names], return_when=return_when)


async def never():
    await asyncio.get_running_loop().create_future()


async def tg_open():
    me = asyncio.current_task()
    async with asyncio.TaskGroup() as tg:
        child = tg.create_task(direct({"me": me}, "me"), name="tg-open-child")
        lone = tg.create_task(never(), name="tg-open-lone")
        T.expect(child, "task", me)
        T.expect(lone, "future")
        T.expect(me, "taskgroup", tg)


async def gather_open(peers):
    g = asyncio.gather(peers["gather-open-b"], peers["lone"])
    T.expect(asyncio.current_task(), "gather", g)
    await g


async def main():
    peers = {}
    peers["gather-a"] = asyncio.create_task(gather_a(peers), name="gather-a")
    peers["gather-b"] = asyncio.create_task(direct(peers, "gather-a"), name="gather-b")
    peers["tg-parent"] = asyncio.create_task(tg_parent(peers), name="tg-parent")
    peers["shield-a"] = asyncio.create_task(shield_a(peers), name="shield-a")
    peers["shield-b"] = asyncio.create_task(direct(peers, "shield-a"), name="shield-b")
    T.expect(peers["gather-b"], "task", peers["gather-a"])
    T.expect(peers["shield-b"], "task", peers["shield-a"])
    rings = {"wait-all": (["wait-all-b"], asyncio.ALL_COMPLETED),
             "wait-any": (["wait-any-b"], asyncio.FIRST_COMPLETED),
             "wait-open": (["wait-open-b", "lone"], asyncio.FIRST_COMPLETED)}
    for name, (members, when) in rings.items():
        peers[name] = asyncio.create_task(waits(peers, members, when), name=name)
        peers[name + "-b"] = asyncio.create_task(direct(peers, name), name=name + "-b")
        T.expect(peers[name + "-b"], "task", peers[name])
    peers["lone"] = asyncio.create_task(never(), name="lone")
    T.expect(peers["lone"], "future")
    peers["gather-open"] = asyncio.create_task(gather_open(peers), name="gather-open")
    peers["gather-open-b"] = asyncio.create_task(direct(peers, "gather-open"),
                                                 name="gather-open-b")
    T.expect(peers["gather-open-b"], "task", peers["gather-open"])
    peers["tg-open"] = asyncio.create_task(tg_open(), name="tg-open")
    # Each waiter future exists once its task is inside asyncio.wait; the
    # steps run without timers.
    for _ in range(3):
        await asyncio.sleep(0)
    for name in rings:
        waiter = peers[name]._fut_waiter
        T.expect(peers[name], "wait", waiter)
        if name != "wait-open":
            T.expect_diagnosis("await-cycle", [peers[name], peers[name + "-b"]], [waiter])
    T.keep.append(peers)
    forever = asyncio.get_running_loop().create_future()
    T.expect(asyncio.current_task(), "future")
    T.expect_all_asleep()
    T.record_when_idle()
    await forever


if __name__ == "__main__":
    asyncio.run(main())
