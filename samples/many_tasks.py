"""A healthy, busy program with many pending tasks, for benchmarks
(tests/bench/bench_tasks.py). One event loop, idle in its selector once
settled; every task is pending for good (nothing ever sets the events or
feeds the queues), and nothing is a deadlock a tool should report beyond
"all asleep".

The N tasks (argv[1]) come in blocks of 20, all named worker-I:
  11  awaiting Event.wait() on one of a few shared events (1 per 1000 tasks)
   4  awaiting Queue.get() on one of a few shared queues (1 per 1000 tasks)
   1  awaiting asyncio.gather() of the 4 next tasks (a gather group)
   4  members of that group, each awaiting Event.wait() in a nested coroutine
A last partial block is cut short (a group needs at least one member). With the asyncio.run main task, which
awaits an event of its own, N + 1 tasks are pending.

Prints "READY PID N+1" on stdout once every task has reached its await.
Run: python3.14 many_tasks.py N
"""
import asyncio
import os
import sys

BLOCK = 20
# Tasks sharing one event or one queue: a waiter list per resource, not one
# resource per task, nor a single list of a million waiters.
SHARE = 1000


async def on_event(ev):
    await ev.wait()


async def on_queue(q):
    return await q.get()


async def member(ev):
    await on_event(ev)


async def leader(members):
    return await asyncio.gather(*members)


async def main(n):
    loop = asyncio.get_running_loop()
    events = [asyncio.Event() for _ in range(n // SHARE + 1)]
    queues = [asyncio.Queue() for _ in range(n // SHARE + 1)]
    keep = []
    i = 0
    while i < n:
        share = i // SHARE
        for _ in range(11):
            if i >= n:
                break
            keep.append(loop.create_task(on_event(events[share]), name="worker-%d" % i))
            i += 1
        for _ in range(4):
            if i >= n:
                break
            keep.append(loop.create_task(on_queue(queues[share]), name="worker-%d" % i))
            i += 1
        if n - i < 2:
            # No room for a group with a member: a plain waiter instead.
            if i < n:
                keep.append(loop.create_task(on_event(events[share]), name="worker-%d" % i))
            break
        lead = i
        i += 1
        members = []
        for _ in range(4):
            if i >= n:
                break
            members.append(loop.create_task(member(events[share]), name="worker-%d" % i))
            i += 1
        keep.extend(members)
        keep.append(loop.create_task(leader(members), name="worker-%d" % lead))
    # Each task runs to its first await in one pass of the loop; a few more
    # passes let the gather callbacks settle.
    for _ in range(3):
        await asyncio.sleep(0)
    pending = sum(1 for t in keep if not t.done())
    if pending != n:
        raise SystemExit("only %d of %d tasks pending" % (pending, n))
    print("READY %d %d" % (os.getpid(), n + 1), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
