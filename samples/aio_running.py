"""A loop thread blocked inside a task: the task `blocker` runs synchronous
code (a threading.Lock it can never acquire) so the event loop never gets
back to its selector.

blocker      running: its coroutine blocker awaits the coroutine inner, which
             calls the plain function wait_sync, blocked in Lock.acquire.
             Its stack is the loop thread's frames from wait_sync down to
             blocker's own frame: wait_sync, inner, blocker; in snarl's
             thread stack exactly these frames carry "task": blocker's id;
             it waits on nothing; the loop's running_task is blocker and the
             task's running_in_thread the loop thread
Task-N       the asyncio.run main task: awaits blocker directly
waiter       waits on an Event
not-started  created by blocker just before it blocked: scheduled, never
             started; chain: its coroutine's frame as created; waits on
             nothing

With RUNNING_PY_TASK (aio_running_py.py) blocker is a pure-Python task
(asyncio.tasks._PyTask), whose Task.__step frames sit between the loop's
frames and blocker's and do not belong to the task.
Run: python3 aio_running.py TRUTH.json  (prints READY once settled)
"""
import asyncio
import threading

import aio_truth

T = aio_truth.Truth()
RUNNING_PY_TASK = False


def wait_sync(gate):
    gate.acquire()


async def inner(gate):
    wait_sync(gate)


async def never(fut):
    await fut


async def blocker(gate, unstarted):
    loop = asyncio.get_running_loop()

    def schedule():
        t = asyncio.create_task(never(loop.create_future()), name="not-started")
        T.expect_unstarted(t)
        unstarted.append(t)

    await T.record_running("wait_sync", before_block=schedule)
    await inner(gate)


async def ring(bell):
    await bell.wait()


async def main():
    loop = asyncio.get_running_loop()
    gate = threading.Lock()
    gate.acquire()
    bell = asyncio.Event()
    unstarted = []
    waiter = asyncio.create_task(ring(bell), name="waiter")
    T.expect(waiter, "event", bell)
    task_type = asyncio.tasks._PyTask if RUNNING_PY_TASK else asyncio.Task
    block = task_type(blocker(gate, unstarted), loop=loop, name="blocker")
    T.expect(block, None)
    T.expect(asyncio.current_task(), "task", block)
    T.keep += [gate, bell, waiter, block, unstarted]
    await block


def run():
    asyncio.run(main())


if __name__ == "__main__":
    run()
