"""Healthy: tasks waiting on events that something outside them will set,
including two shapes that look like wake-cycles but are not closed. One
event loop, idle in its selector once settled; timers pending.

timer-event   `await ev.wait()`; loop.call_later(3600, ev.set) will set
              it (the TimerHandle references ev.set)
near-a        waits on ev_a and would set ev_b; near-b waits on ev_b and
near-b        would set ev_a; but ev_a is also referenced by helper-1,
              which sleeps on a timer (asyncio.sleep(3600)) and will then
              set ev_a: a resolver outside the blocked pair
helper-1      holds ev_a; `await asyncio.sleep(3600)`, then ev_a.set()
far-a         waits on ev_c and would set ev_d; far-b waits on ev_d and
far-b         would set ev_c; a timer (call_later(3600, ev_d.set)) also
              references ev_d: someone outside the pair can set it

Resolvers: ev_a [near-b, helper-1] (external: none), ev_b [near-a],
ev_c [far-b], ev_d [far-a] plus the timer handle (external), ev [] plus
the timer handle (external).
Task-N   the asyncio.run main task: awaits gather(all of the above)

Expected diagnoses: none (no wake-cycle: each pair has a resolver outside
it; no all-asleep: timers). Exit status 0.
Run: python3 diag_healthy_wakers.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()


async def ring(ev):
    await ev.wait()


async def relay(mine, other):
    await mine.wait()
    other.set()


async def helper(ev):
    await asyncio.sleep(3600)
    ev.set()


def start():
    """The events exist only in the tasks' frames and the timers."""
    loop = asyncio.get_running_loop()
    ev, ev_a, ev_b, ev_c, ev_d = (asyncio.Event() for _ in range(5))
    loop.call_later(3600, ev.set)
    loop.call_later(3600, ev_d.set)

    def task(coro, name, kind):
        t = asyncio.create_task(coro, name=name)
        T.expect(t, kind)
        return t

    return [task(ring(ev), "timer-event", "event"),
            task(relay(ev_a, ev_b), "near-a", "event"),
            task(relay(ev_b, ev_a), "near-b", "event"),
            task(helper(ev_a), "helper-1", "sleep"),
            task(relay(ev_c, ev_d), "far-a", "event"),
            task(relay(ev_d, ev_c), "far-b", "event")]


async def main():
    gathering = asyncio.gather(*start())
    T.expect(asyncio.current_task(), "gather", gathering)
    T.record_when_idle()
    await gathering


if __name__ == "__main__":
    asyncio.run(main())
