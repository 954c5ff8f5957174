"""Healthy: queue workers fed by a timer. A loop callback, re-armed with
loop.call_later, puts work on a queue; workers process it and wait for
more. Sampled once the first batch is done and the next feed is an hour
away. One event loop, idle in its selector once settled.

worker-0 .. worker-3   `await queue.get()` in a loop, idle on the empty
                       queue (each has processed some items)
Task-N                 the asyncio.run main task: awaits
                       gather(the workers)
The timer: feed(queue), re-armed every FEED_PERIOD seconds; the queue is
referenced by the TimerHandle's arguments.

Expected diagnoses: none. Exit status 0.
Run: python3 diag_healthy_queue_timer.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()
WORKERS = 4
BATCH = 12
FEED_PERIOD = 3600


def feed(loop, queue):
    for i in range(BATCH):
        queue.put_nowait(i)
    loop.call_later(FEED_PERIOD, feed, loop, queue)


async def worker(queue, done):
    while True:
        item = await queue.get()
        done.append(item)
        queue.task_done()


async def main():
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    done = []
    workers = []
    for i in range(WORKERS):
        t = asyncio.create_task(worker(queue, done), name="worker-%d" % i)
        T.expect(t, "queue", queue)
        workers.append(t)
    feed(loop, queue)
    await queue.join()
    if len(done) != BATCH:
        diag_truth.fail("workers processed %d of %d items" % (len(done), BATCH))
    gathering = asyncio.gather(*workers)
    T.expect(asyncio.current_task(), "gather", gathering)
    T.keep.append(queue)
    T.record_when_idle()
    await gathering


if __name__ == "__main__":
    asyncio.run(main())
