"""Threads that are busy or will be woken: snarl must report nothing.

pool      a ThreadPoolExecutor(4) completing short jobs that take a shared
          threading.Lock, fed by 'feeder', which waits on each job's
          future.result() (no timeout) and then submits the next
loop      an asyncio loop whose task awaits loop.run_in_executor() of jobs
          (50 ms each) on the default executor, over and over
sleeper   waits on a threading.Event that a threading.Timer will set (in
          an hour): a waiter whose waker is another live thread
patient   holds the Lock 'held' and waits on an empty queue.Queue with
          get(timeout=3600); 'blocked' waits `with held:` behind it: it
          ends when the timeout does

Expected diagnoses: none; exit status 0.
Run: python3 threads_healthy.py TRUTH.json  (prints READY)
"""
import asyncio
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import thread_truth

T = thread_truth.ThreadTruth()
shared = threading.Lock()


def work(n):
    with shared:
        total = sum(range(n))
    time.sleep(0.001)
    return total


def feeder(pool):
    while True:
        pool.submit(work, 1000).result()


def slow_work():
    time.sleep(0.05)
    return work(500)


async def loop_jobs():
    # Each job sleeps a while: the loop waits in its selector most of the
    # time, so a core (read once, unlike a live target) does not catch it
    # inside a callback and report it blocked.
    loop = asyncio.get_running_loop()
    while True:
        await loop.run_in_executor(None, slow_work)


ev = threading.Event()
timer = threading.Timer(3600, ev.set)
timer.daemon = True
held = threading.Lock()
q = queue.Queue()


def patient():
    with held:
        T.held(held)
        try:
            q.get(timeout=3600)
        except queue.Empty:
            pass


def blocked():
    with held:
        pass


pool = ThreadPoolExecutor(4)
threads = [threading.Thread(target=feeder, args=(pool,), name="feeder", daemon=True),
           threading.Thread(target=ev.wait, name="sleeper", daemon=True),
           threading.Thread(target=patient, name="patient", daemon=True)]
timer.start()
for t in threads:
    t.start()
T.expect_wait(threads[1], "wait", ev)
T.expect_wait(threads[2], "wait", q, timeout=True)
while not held.locked():
    time.sleep(0.01)
late = threading.Thread(target=blocked, name="blocked", daemon=True)
late.start()
T.expect_wait(late, "blocked", held)
T.ready()
asyncio.run(loop_jobs())
