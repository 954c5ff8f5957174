"""A program that never holds still, for torn-read tests
(tests/e2e/test_torn.py): as fast as it can, it creates, finishes and
cancels tasks (so the task registries change under a reader), grows and
shrinks dicts, sets, lists and deques (so their tables are resized and
freed), takes and releases locks and semaphores, fills and drains queues,
sets and clears events and resolves futures.

snarl reading it with --no-freeze sees memory that changes between two
reads; frozen, it must see one consistent moment.

Writes {"pid": ...} to argv[1], prints READY once the churn runs, and
churns until killed.
"""
import asyncio
import collections
import json
import os
import random
import sys

# Enough workers that the task list is long (walks take time, so the program
# moves under them), few enough that one churn round stays fast.
WORKERS = 64
# Containers grow to this and are cleared: every clear frees the old table,
# so a reader holding its address reads freed (then reused) memory.
GROW = 512


async def child(i, shared):
    shared["children"][i] = i
    await asyncio.sleep(0)
    shared["children"].pop(i, None)
    return i


async def worker(n, shared):
    rng = random.Random(n)
    lock, sem, queue = shared["lock"], shared["sem"], shared["queue"]
    event, bag, items, seen = shared["event"], shared["bag"], shared["items"], shared["seen"]
    loop = asyncio.get_running_loop()
    i = 0
    while True:
        i += 1
        key = (n, i)
        bag[key] = [i] * (i % 7)
        items.append(key)
        seen.add(key)
        if len(bag) > GROW:
            bag.clear()
            seen.clear()
            items.clear()
        async with lock:
            await asyncio.sleep(0)
        async with sem:
            queue.put_nowait(key)
            await asyncio.sleep(0)
        if not queue.empty():
            queue.get_nowait()
        if rng.random() < 0.5:
            event.set()
        else:
            event.clear()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, i)
        await fut
        kids = [asyncio.ensure_future(child(n * 100000 + i * 4 + k, shared)) for k in range(3)]
        if rng.random() < 0.3:
            kids[0].cancel()
        await asyncio.gather(*kids, return_exceptions=True)
        if rng.random() < 0.1:
            t = asyncio.ensure_future(asyncio.sleep(10))
            await asyncio.sleep(0)
            t.cancel()


async def main():
    shared = {
        "lock": asyncio.Lock(), "sem": asyncio.Semaphore(3), "queue": asyncio.Queue(),
        "event": asyncio.Event(), "bag": {}, "items": collections.deque(), "seen": set(),
        "children": {},
    }
    workers = [asyncio.ensure_future(worker(n, shared)) for n in range(WORKERS)]
    await asyncio.sleep(0.2)
    with open(sys.argv[1], "w") as f:
        json.dump({"pid": os.getpid(), "python": "%d.%d.%d" % sys.version_info[:3]}, f)
    print("READY", flush=True)
    await asyncio.gather(*workers)


asyncio.run(main())
