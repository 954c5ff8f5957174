"""A ring through a worker thread: task 'holder' holds an asyncio.Lock
while it awaits loop.run_in_executor(None, job); job, on the executor's
worker thread, calls asyncio.run_coroutine_threadsafe(needs_the_lock(),
loop).result(); the coroutine's task waits for the lock 'holder' holds.
Task 'wrapper' does the same through asyncio.wrap_future(pool.submit(job))
on a ThreadPoolExecutor of its own, with its own lock: a second ring.
argv[2] "timeout": job calls .result(timeout=3600) instead: the workers
wake by themselves in an hour, so nothing is stuck for good (a control).

Expected diagnoses (exactly; none with "timeout"), one per ring:
lock-cycle tasks [holder (wrapper), the run_coroutine_threadsafe task]
resources [the asyncio future it awaits, the executor's concurrent future,
the concurrent future run_coroutine_threadsafe returned, the Lock] threads
[the worker]. Each worker's work item: job, completing the executor's
future.
Run: python3 threads_executor_ring.py TRUTH.json [timeout]  (prints READY)
"""
import asyncio
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import thread_truth

T = thread_truth.ThreadTruth()
TIMEOUT = 3600 if len(sys.argv) > 2 and sys.argv[2] == "timeout" else None
facts = {}


async def needs_the_lock(lock):
    async with lock:
        pass


def job(key, loop, lock):
    facts[key] = {"executor_future": T.running("job"), "worker": threading.current_thread()}
    cf = asyncio.run_coroutine_threadsafe(needs_the_lock(lock), loop)
    facts[key]["threadsafe_future"] = cf
    return cf.result(TIMEOUT)


async def holder(lock):
    async with lock:
        T.task_held(lock, asyncio.current_task())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, job, "holder", loop, lock)


async def wrapper(lock, pool):
    async with lock:
        T.task_held(lock, asyncio.current_task())
        loop = asyncio.get_running_loop()
        await asyncio.wrap_future(pool.submit(job, "wrapper", loop, lock))


def expect_ring(task, lock):
    """The ring through task's worker, from the interpreter's own objects:
    task waits on the asyncio future that mirrors the executor's one; the
    coroutine task run_coroutine_threadsafe made waits for the lock."""
    f = facts[task.get_name()]
    coro_task = next(t for t in asyncio.all_tasks()
                     if t.get_coro().__qualname__ == "needs_the_lock"
                     and t.get_coro().cr_frame.f_locals["lock"] is lock)
    af = task._fut_waiter
    assert af is not None and not af.done()
    assert coro_task._fut_waiter is not None and lock.locked()
    T.expect_wait(f["worker"], "wait", f["threadsafe_future"], timeout=TIMEOUT is not None)
    if TIMEOUT is None:
        T.expect_diagnosis("lock-cycle", tasks=[task, coro_task],
                           resources=[af, f["executor_future"], f["threadsafe_future"], lock],
                           threads=[f["worker"]])
    T.keep.extend([af, coro_task])


async def main():
    pool = ThreadPoolExecutor(1, thread_name_prefix="own-pool")
    lock, lock2 = asyncio.Lock(), asyncio.Lock()
    h = asyncio.create_task(holder(lock), name="holder")
    w = asyncio.create_task(wrapper(lock2, pool), name="wrapper")
    while not all("threadsafe_future" in facts.get(k, {}) for k in ("holder", "wrapper")):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    expect_ring(h, lock)
    expect_ring(w, lock2)
    T.ready()
    await asyncio.gather(h, w)


if __name__ == "__main__":
    asyncio.run(main())
