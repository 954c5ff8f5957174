"""A loop thread and a worker thread deadlocked through a threading lock:
'worker' takes the threading.Lock `guard`, then asks the loop for a
result with run_coroutine_threadsafe(answer(), loop).result(); meanwhile
task 'sync' on the loop thread runs `with guard:` synchronously, so the
loop never runs the callback that would start answer().

Expected diagnoses (exactly): thread-lock-cycle threads [the loop
thread, worker] resources [guard, the concurrent future]; loop-blocked of
the loop, naming task 'sync'. Exit status 1.
Run: python3 threads_loop_lock.py TRUTH.json  (prints READY)
"""
import asyncio
import threading
import time

import thread_truth

T = thread_truth.ThreadTruth()
guard = threading.Lock()
taken = threading.Event()
facts = {}


async def answer():
    return 42


def worker(loop):
    with guard:
        T.held(guard)
        taken.set()
        # Wait until the loop thread blocks on guard, so the callback that
        # would start answer() stays in its ready queue.
        while sys_frame(loop_thread).f_code.co_name != "take_guard":
            time.sleep(0.01)
        facts["future"] = asyncio.run_coroutine_threadsafe(answer(), loop)
        facts["future"].result()


def sys_frame(thread):
    import sys
    return sys._current_frames()[thread.ident]


def take_guard():
    with guard:
        pass


async def sync():
    while not taken.is_set():
        await asyncio.sleep(0.01)
    take_guard()


async def main():
    loop = asyncio.get_running_loop()
    w = threading.Thread(target=worker, args=(loop,), name="worker", daemon=True)
    w.start()
    task = asyncio.create_task(sync(), name="sync")

    def then():
        while "future" not in facts:
            time.sleep(0.01)
        time.sleep(0.2)
        cf = facts["future"]
        # The interpreter's own view: the loop's ready queue holds the
        # callback whose closure would chain a task to cf.
        assert any(getattr(h, "_callback", None) is not None
                   and "future" in h._callback.__code__.co_freevars
                   and h._callback.__closure__[h._callback.__code__.co_freevars.index("future")]
                   .cell_contents is cf for h in list(loop._ready))
        T.expect_wait(w, "wait", cf)
        T.expect_diagnosis("thread-lock-cycle", resources=[guard, cf], threads=[loop_thread, w])
        T.expect_diagnosis("loop-blocked", tasks=[task])

    T.expect_wait(loop_thread, "take_guard", guard)
    T.ready(then=then)
    await task


loop_thread = threading.current_thread()
if __name__ == "__main__":
    asyncio.run(main())
