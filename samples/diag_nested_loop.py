"""nested-loop: a loop run re-entered inside a running loop on the same
thread. A task of the outer loop calls a plain function that hides the
running loop (asyncio.events._set_running_loop(None), what "nest" hacks
do) and runs another event loop with run_until_complete(); the thread's
stack then holds two BaseEventLoop.run_forever frames (checked on
sys._current_frames() before READY), the inner one idle in its selector.

The inner loop waits on a future that a timer (call_later(3600)) will
resolve: it has no task (from 3.14 a C task cannot start while another
task of the thread is running), and it is not asleep for good.

Outer loop (asyncio.run):
  nester    running: calls run_other(), inside other.run_until_complete;
            the outer loop's running task
  sleeper   `await asyncio.sleep(3600)`
  Task-N    the asyncio.run main task: awaits nester directly

The inner run has no running task (its loop is idle in select), so the
diagnosis names nester alone; its "loop" may be either loop.
Decision: the outer loop is blocked by the nested run, which nested-loop
explains; it is not also reported as loop-blocked.

Expected diagnoses (exactly):
  nested-loop  tasks [nester]   resources []   loop: outer or inner
Exit status 1. The text report does not start "Found N asyncio deadlock".
Variant diag_nested_same_loop.py: the same loop re-entered.
Run: python3 diag_nested_loop.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()
T.expect_run_forever_frames(2)
SAME_LOOP = False


def noop():
    pass


def run_other(other):
    outer = asyncio.events._get_running_loop()
    done = other.create_future()
    other.call_later(3600, done.set_result, None)
    asyncio.events._set_running_loop(None)
    try:
        return other.run_until_complete(done)
    finally:
        asyncio.events._set_running_loop(outer)


def run_again(loop):
    """Re-enters loop.run_forever() from inside one of its own tasks, as
    nest_asyncio-style patches do: hide that it is running, run it."""
    loop._thread_id = None
    asyncio.events._set_running_loop(None)
    loop.run_forever()


async def nester():
    me = asyncio.current_task()
    loop = asyncio.get_running_loop()
    T.expect(me, None)
    if SAME_LOOP:
        # A timer of its own, so that the loop is not asleep for good.
        loop.call_later(3600, noop)
        T.expect_diagnosis("nested-loop", [me], loops=[loop])
        await T.record_running("select")
        run_again(loop)
    else:
        other = asyncio.new_event_loop()
        T.keep.append(other)
        T.note("inner_loop", diag_truth.hexid(other))
        T.expect_diagnosis("nested-loop", [me], loops=[loop, other])
        await T.record_running("select")
        run_other(other)


async def nap():
    await asyncio.sleep(3600)


async def main():
    if not SAME_LOOP:
        sleeper = asyncio.create_task(nap(), name="sleeper")
        T.expect(sleeper, "sleep")
    t = asyncio.create_task(nester(), name="nester")
    T.expect(asyncio.current_task(), "task", t)
    await t


def run(same_loop):
    global SAME_LOOP
    SAME_LOOP = same_loop
    asyncio.run(main())


if __name__ == "__main__":
    run(False)
