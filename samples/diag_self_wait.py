"""loop-self-wait: code on the loop thread blocks on
asyncio.run_coroutine_threadsafe(coro, loop).result() for its own loop:
the coroutine can only run once the loop thread returns to the loop, which
it never does.

self-waiter  running: calls run_coroutine_threadsafe(answer(), loop) for
             its own loop, then cf.result(), blocked in
             threading.Condition.wait under concurrent.futures'
             Future.result; the loop's running task. The callback that
             would start answer() sits in loop._ready, never run
waiter       `await ev.wait()` on an Event only it references
Task-N       the asyncio.run main task: awaits self-waiter directly

The resource is the concurrent.futures.Future `cf` that result() waits
on: it is `self` of Future.result's frame on the loop thread's stack.
Decision: a loop thread blocked this way is loop-self-wait, not also
loop-blocked (the more specific diagnosis names the same block).

Expected diagnoses (exactly):
  loop-self-wait  tasks [self-waiter]   resources [cf]
  stuck  tasks [waiter]   resources [its Event]: nothing that can still
         run references the Event
Exit status 1. The text report does not start "Found N asyncio deadlock".
Variant diag_self_wait_callback.py: the same from a loop callback, no
task running: loop-self-wait with tasks [] and resources [cf].
Run: python3 diag_self_wait.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()
IN_CALLBACK = False


async def answer():
    return 42


def block_on_own_loop(task):
    """Blocks for good: its result needs the loop this thread runs."""
    loop = asyncio.get_running_loop()
    cf = asyncio.run_coroutine_threadsafe(answer(), loop)
    T.expect_diagnosis("loop-self-wait", [task] if task else [], [cf])
    return cf.result()


async def self_waiter():
    me = asyncio.current_task()
    T.expect(me, None)
    await T.record_running("wait")
    block_on_own_loop(me)


async def ring():
    ev = asyncio.Event()
    # Only this frame references ev: nothing that can still run can set it.
    T.expect_diagnosis("stuck", [asyncio.current_task()], [ev])
    await ev.wait()


async def main():
    waiter = asyncio.create_task(ring(), name="waiter")
    T.expect(waiter, "event")
    if IN_CALLBACK:
        forever = asyncio.get_running_loop().create_future()
        T.expect(asyncio.current_task(), "future", forever)
        T.record_in_callback("wait", lambda: block_on_own_loop(None))
        await forever
    else:
        t = asyncio.create_task(self_waiter(), name="self-waiter")
        T.expect(asyncio.current_task(), "task", t)
        await t


def run(in_callback):
    global IN_CALLBACK
    IN_CALLBACK = in_callback
    asyncio.run(main())


if __name__ == "__main__":
    run(False)
