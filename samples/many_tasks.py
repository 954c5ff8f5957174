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

An optional second argument picks another shape of N tasks, each a worst
case for one step of an analysis (tests/bench/README.md):
  event   every task waits on one shared Event
  locks   N/2 Locks, each held by a task (inside `async with`, waiting on a
          shared Event) and waited for by another
  gather  one task gathers the N-1 others, which wait on shared Events
  wait    one task in asyncio.wait() for the N-1 others, which wait on
          shared Events (a set of N-1 members read from its frame)
  chain   an await chain N deep: task I awaits task I+1, the last waits on
          an Event
  deep    every task waits on a shared Event 20 coroutine frames down
  heap    8 tasks waiting on Events beside N * 1000 small tracked objects
          (lists) on the heap, for the reachability passes; N + 1 tasks
          here means 9 pending

Prints "READY PID T" on stdout once every task has reached its await, T
being the number of pending tasks.
Run: python3.14 many_tasks.py N [mixed|event|locks|gather|wait|chain|deep|heap]
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


async def waiter(members):
    return await asyncio.wait(members)


# Coroutine frames per task in the deep shape (the await itself included).
DEEP = 20
# Tasks in the heap shape; the objects are what it measures.
HEAP_TASKS = 8
# Objects per N in the heap shape: N = 10,000 makes 10 million.
HEAP_PER_N = 1000


async def nest(ev, depth):
    if depth <= 1:
        await ev.wait()
    else:
        await nest(ev, depth - 1)


async def hold(lock, ev):
    async with lock:
        await ev.wait()


async def take(lock):
    async with lock:
        pass


async def link(nxt):
    return await nxt


def shape_tasks(loop, n, shape, keep):
    """Creates the tasks of a shape other than mixed, in the order their
    awaits need; returns how many are pending once settled."""
    events = [asyncio.Event() for _ in range(n // SHARE + 1)]
    if shape == "event":
        ev = events[0]
        for i in range(n):
            keep.append(loop.create_task(on_event(ev), name="worker-%d" % i))
    elif shape == "locks":
        for i in range(0, n - 1, 2):
            lock = asyncio.Lock()
            keep.append(loop.create_task(hold(lock, events[i // SHARE]), name="worker-%d" % i))
            keep.append(loop.create_task(take(lock), name="worker-%d" % (i + 1)))
        if n % 2:
            keep.append(loop.create_task(on_event(events[0]), name="worker-%d" % (n - 1)))
    elif shape in ("gather", "wait"):
        members = [loop.create_task(on_event(events[i // SHARE]), name="worker-%d" % i)
                   for i in range(1, n)]
        keep.extend(members)
        lead = leader if shape == "gather" else waiter
        keep.append(loop.create_task(lead(members), name="worker-0"))
    elif shape == "chain":
        nxt = loop.create_task(on_event(events[0]), name="worker-%d" % (n - 1))
        keep.append(nxt)
        for i in range(n - 2, -1, -1):
            nxt = loop.create_task(link(nxt), name="worker-%d" % i)
            keep.append(nxt)
    elif shape == "deep":
        for i in range(n):
            keep.append(loop.create_task(nest(events[i // SHARE], DEEP), name="worker-%d" % i))
    elif shape == "heap":
        heap = [[] for _ in range(n * HEAP_PER_N)]
        keep.append(heap)
        for i in range(HEAP_TASKS):
            keep.append(loop.create_task(on_event(events[0]), name="worker-%d" % i))
        n = HEAP_TASKS
    else:
        raise SystemExit("unknown shape %r" % shape)
    return n


async def main(n, shape="mixed"):
    loop = asyncio.get_running_loop()
    if shape != "mixed":
        keep = []
        n = shape_tasks(loop, n, shape, keep)
        # A chain settles one link per pass of the loop at most; the others
        # in a pass or two.
        for _ in range(3):
            await asyncio.sleep(0)
        pending = sum(1 for t in keep if isinstance(t, asyncio.Task) and not t.done())
        if pending != n:
            raise SystemExit("only %d of %d tasks pending" % (pending, n))
        print("READY %d %d" % (os.getpid(), n + 1), flush=True)
        await asyncio.Event().wait()
        return
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
    asyncio.run(main(int(sys.argv[1]), *sys.argv[2:3]))
