"""loop-blocked: a task runs synchronous code on the loop thread
(time.sleep(3600) in a plain function its coroutine calls), so the event
loop never gets back to its selector.

blocker   running: its coroutine blocker calls compute(), blocked in
          time.sleep; the loop's running task
sleeper   `await asyncio.sleep(3600)`
waiter    `await ev.wait()` on an Event only it references
Task-N    the asyncio.run main task: awaits blocker directly

The loop thread is not in its selector, so the loop is not all-asleep; no
cycle exists.

Expected diagnoses (exactly):
  loop-blocked  tasks [blocker]   resources []
  stuck  tasks [waiter]   resources [its Event]: nothing that can still
         run references the Event
Exit status 1. The text report does not start "Found N asyncio deadlock".
With the variants (same expectations but where said):
  diag_loop_blocked_io.py        blocker reads a blocking socket nobody
                                 writes to (sock.recv in read_blocking)
  diag_loop_blocked_callback.py  a loop callback (stall, scheduled with
                                 call_soon), not a task, calls time.sleep:
                                 loop-blocked with tasks [] (no running
                                 task); blocker does not exist there
Run: python3 diag_loop_blocked.py TRUTH.json  (prints READY once settled)
"""
import asyncio
import socket
import time

import diag_truth

T = diag_truth.DiagTruth()
# "sleep", "io" or "callback": what blocks the loop thread.
SHAPE = "sleep"
BLOCK_SECONDS = 3600


def compute():
    time.sleep(BLOCK_SECONDS)


def read_blocking(sock):
    return sock.recv(100)


def stall():
    time.sleep(BLOCK_SECONDS)


async def blocker(peer):
    me = asyncio.current_task()
    T.expect(me, None)
    T.expect_diagnosis("loop-blocked", [me])
    if SHAPE == "io":
        await T.record_running("read_blocking")
        read_blocking(peer)
    else:
        await T.record_running("compute")
        compute()


async def nap():
    await asyncio.sleep(3600)


async def ring():
    ev = asyncio.Event()
    # Only this frame references ev: nothing that can still run can set it.
    T.expect_diagnosis("stuck", [asyncio.current_task()], [ev])
    await ev.wait()


async def main():
    a, b = socket.socketpair()
    T.keep += [a, b]
    sleeper = asyncio.create_task(nap(), name="sleeper")
    waiter = asyncio.create_task(ring(), name="waiter")
    T.expect(sleeper, "sleep")
    T.expect(waiter, "event")
    if SHAPE == "callback":
        forever = asyncio.get_running_loop().create_future()
        T.expect(asyncio.current_task(), "future", forever)
        T.expect_diagnosis("loop-blocked", [])
        T.record_in_callback("stall", stall)
        await forever
    else:
        block = asyncio.create_task(blocker(a), name="blocker")
        T.expect(asyncio.current_task(), "task", block)
        await block


def run(shape):
    global SHAPE
    SHAPE = shape
    asyncio.run(main())


if __name__ == "__main__":
    run("sleep")
