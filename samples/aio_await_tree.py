"""Tasks awaiting tasks: a direct await, gather, TaskGroup, shield, wait_for
with a long timeout, asyncio.timeout(), asyncio.wait, sleep(3600) and a task
that swallowed a cancellation. One event loop, idle in its selector once
settled.

Task-N (the asyncio.run main task, never named)
  awaits gather(direct, group, shielder, waiter-for, timeouter, stubborn,
  wait-all, wait-first)
direct       awaits the task direct-child directly; direct-child sleeps 3600 s
group        in TaskGroup.__aexit__ (3.14+: TaskGroup._aexit) for tg-a (a bare
             future) and tg-b (asyncio.sleep(3600))
shielder     awaits shield(shielded); shielded waits on the Event `bell`
waiter-for   awaits wait_for(wf-child, 3600); wf-child waits on a bare future.
             3.11: wait_for awaits its own waiter future ("timeout", members
             [wf-child], deadline); 3.12+: wait_for awaits wf-child directly
             inside an asyncio.Timeout
timeouter    `async with asyncio.timeout(3600): await bell.wait()`: waits on
             the same Event as shielded
stubborn     was cancelled once, caught CancelledError, now awaits a bare
             future: cancels == 1
wait-all     asyncio.wait([wait-a, wait-b]): its helper's waiter future
             ("wait", members [wait-a, wait-b]); wait-a waits on a bare
             future, wait-b sleeps 3600 s
wait-first   asyncio.wait([wait-b, shielded], timeout=3600,
             return_when=FIRST_COMPLETED): "wait", members [wait-b,
             shielded], the deadline of its timeout's timer

snarl must report every pending task with its coroutine chain (asyncio's own
frames included: sleep, wait_for, TaskGroup.__aexit__, Event.wait), what it
waits on (aio_truth documents the kinds and ids), the members of the gather,
TaskGroup and shield, each child's awaited_by, the sleeps' deadlines and the
armed asyncio.Timeout objects.
Run: python3 aio_await_tree.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import aio_truth

T = aio_truth.Truth()


async def never(fut):
    await fut


async def nap():
    await asyncio.sleep(3600)


async def direct(child):
    await child


async def group():
    loop = asyncio.get_running_loop()
    hold = loop.create_future()
    async with asyncio.TaskGroup() as tg:
        a = tg.create_task(never(hold), name="tg-a")
        b = tg.create_task(nap(), name="tg-b")
        T.expect(a, "future", hold)
        T.expect(b, "sleep")
        T.expect(asyncio.current_task(), "taskgroup", tg)


async def shielder(inner):
    outer = asyncio.shield(inner)
    T.expect(asyncio.current_task(), "shield", outer)
    await outer


async def ring(bell):
    await bell.wait()


async def waiter_for(child):
    await asyncio.wait_for(child, 3600)


async def timeouter(bell):
    async with asyncio.timeout(3600):
        await bell.wait()


async def wait_all(children):
    await asyncio.wait(children)


async def wait_first(children):
    await asyncio.wait(children, timeout=3600, return_when=asyncio.FIRST_COMPLETED)


async def stubborn(first, second):
    try:
        await first
    except asyncio.CancelledError:
        pass
    await second


async def main():
    loop = asyncio.get_running_loop()
    bell = asyncio.Event()
    direct_child = asyncio.create_task(nap(), name="direct-child")
    T.expect(direct_child, "sleep")
    d = asyncio.create_task(direct(direct_child), name="direct")
    T.expect(d, "task", direct_child)
    g = asyncio.create_task(group(), name="group")
    shielded = asyncio.create_task(ring(bell), name="shielded")
    T.expect(shielded, "event", bell)
    s = asyncio.create_task(shielder(shielded), name="shielder")
    wf_hold = loop.create_future()
    wf_child = asyncio.create_task(never(wf_hold), name="wf-child")
    T.expect(wf_child, "future", wf_hold)
    wf = asyncio.create_task(waiter_for(wf_child), name="waiter-for")
    if _wait_for_uses_waiter():
        T.expect(wf, "timeout")  # its own waiter future; members [wf-child]
    else:
        T.expect(wf, "task", wf_child)
    to = asyncio.create_task(timeouter(bell), name="timeouter")
    T.expect(to, "event", bell)
    first, second = loop.create_future(), loop.create_future()
    st = asyncio.create_task(stubborn(first, second), name="stubborn")
    T.expect(st, "future", second)
    await asyncio.sleep(0)  # stubborn now waits on `first`
    st.cancel()
    wait_hold = loop.create_future()
    wait_a = asyncio.create_task(never(wait_hold), name="wait-a")
    T.expect(wait_a, "future", wait_hold)
    wait_b = asyncio.create_task(nap(), name="wait-b")
    T.expect(wait_b, "sleep")
    wa = asyncio.create_task(wait_all([wait_a, wait_b]), name="wait-all")
    T.expect(wa, "wait")  # its helper's waiter future
    wfirst = asyncio.create_task(wait_first([wait_b, shielded]), name="wait-first")
    T.expect(wfirst, "wait")
    gathering = asyncio.gather(d, g, s, wf, to, st, wa, wfirst)
    T.expect(asyncio.current_task(), "gather", gathering)
    T.keep += [bell, direct_child, d, g, shielded, s, wf_hold, wf_child, wf, to, first,
               second, st, wait_hold, wait_a, wait_b, wa, wfirst]
    T.record_when_idle()
    await gathering


def _wait_for_uses_waiter():
    """3.11's wait_for awaits a waiter future of its own; from 3.12 it
    awaits the future itself inside asyncio.timeout()."""
    return "waiter" in asyncio.wait_for.__code__.co_varnames


if __name__ == "__main__":
    asyncio.run(main())
