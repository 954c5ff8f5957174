"""wake-cycle through futures, conditions, and a three-task ring mixing an
Event, a bare future and a Queue. Each resource is referenced only by the
frames of the tasks below. One event loop, idle in its selector once
settled; no timers, no descriptors but the self-pipe, no other Python
thread.

fut-a     `await mine` on the bare future fa; would `other.set_result()` fb
fut-b     `await mine` on fb; would resolve fa
cond-a    `async with ca: await ca.wait()` on the Condition ca; would then
          `async with cb: cb.notify()`
cond-b    waits on cb the same way; would notify ca
ring-1    `await ev.wait()` on the Event ev; would then `queue.put_nowait()`
ring-2    `await fut` on the bare future fut; would then `ev.set()`
ring-3    `await queue.get()` on the empty Queue queue; would then
          `fut.set_result()`
Task-N    the asyncio.run main task: awaits gather(all of the above)

Resolvers: fa [fut-b], fb [fut-a], ca [cond-b], cb [cond-a], ev [ring-2],
fut [ring-3], queue [ring-1].

Expected diagnoses (exactly; one per cycle):
  wake-cycle  tasks [fut-a, fut-b]            resources [fa, fb]
  wake-cycle  tasks [cond-a, cond-b]          resources [ca, cb]
  wake-cycle  tasks [ring-1, ring-2, ring-3]  resources [ev, fut, queue]
  all-asleep  tasks [Task-N and the 7 above]  resources []
Exit status 1. The text report starts "Found 3 asyncio deadlocks".
Run: python3 diag_wake_mixed.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()


async def fut_relay(mine, other):
    await mine
    other.set_result(None)


async def cond_relay(mine, other):
    async with mine:
        await mine.wait()
    async with other:
        other.notify()


async def ring_1(ev, queue):
    await ev.wait()
    queue.put_nowait(1)


async def ring_2(fut, ev):
    await fut
    ev.set()


async def ring_3(queue, fut):
    await queue.get()
    fut.set_result(None)


def start():
    """The resources exist only in the tasks' frames."""
    loop = asyncio.get_running_loop()
    fa, fb = loop.create_future(), loop.create_future()
    ca, cb = asyncio.Condition(), asyncio.Condition()
    ev, fut, queue = asyncio.Event(), loop.create_future(), asyncio.Queue()

    def task(coro, name, kind):
        t = asyncio.create_task(coro, name=name)
        T.expect(t, kind)
        return t

    a = task(fut_relay(fa, fb), "fut-a", "future")
    b = task(fut_relay(fb, fa), "fut-b", "future")
    c = task(cond_relay(ca, cb), "cond-a", "condition")
    d = task(cond_relay(cb, ca), "cond-b", "condition")
    r1 = task(ring_1(ev, queue), "ring-1", "event")
    r2 = task(ring_2(fut, ev), "ring-2", "future")
    r3 = task(ring_3(queue, fut), "ring-3", "queue")
    T.expect_diagnosis("wake-cycle", [a, b], [fa, fb])
    T.expect_diagnosis("wake-cycle", [c, d], [ca, cb])
    T.expect_diagnosis("wake-cycle", [r1, r2, r3], [ev, fut, queue])
    return [a, b, c, d, r1, r2, r3]


async def main():
    gathering = asyncio.gather(*start())
    T.expect(asyncio.current_task(), "gather", gathering)
    T.expect_all_asleep()
    T.record_when_idle()
    await gathering


if __name__ == "__main__":
    asyncio.run(main())
