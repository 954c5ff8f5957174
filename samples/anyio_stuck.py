"""anyio on asyncio's backend, stuck (or not) in one of these ways (argv[2]):

  locks    two task-group tasks ("left", "right", named by start_soon) take
           two anyio.Locks in opposite orders: snarl must report one
           lock-cycle of exactly those two tasks and locks, each lock held
           by the task the lock itself records as its owner.
  gone     a task receives from a memory object stream whose only send
           stream was dropped without close(): nothing can ever send. snarl
           must type its wait as the stream, with no resolver, and say that
           no send stream is left.
  ring     "ping" receives from a stream whose only sender "pong" holds,
           and "pong" from one whose only sender "ping" holds: a
           wake-cycle of exactly those two tasks and two streams.
  limiters two tasks take two CapacityLimiter(1)s in opposite orders: a
           lock-cycle, each limiter held by the borrower it records.
  semaphore a task holding an anyio.Semaphore(1) acquires it again: a
           lock-reacquire. Here the host task waits in the task group's
           __aexit__ for its children: they are that wait's members.
  healthy  a producer and consumers pass items through memory object
           streams, a CapacityLimiter and a Semaphore, non-stop: nothing
           may be reported.

The truth (argv[1]): pid, and the tasks and primitives involved, from
anyio's own records (Lock._owner_task, the stream's statistics).
Prints READY once the state is reached.
Run: python3.14 anyio_stuck.py TRUTH.json locks|gone|ring|limiters|semaphore|healthy
"""
import asyncio
import gc
import json
import os
import sys

import anyio

MODE = sys.argv[2]
# Items the healthy producer sends at most: it stops on its own long after any test.
ITEMS = 10 ** 7


def tid():
    return hex(id(asyncio.current_task()))


async def opposite_order(tg, a, b, waiting):
    """Tasks 'left' and 'right' take a then b, and b then a; returns the
    two tasks once waiting(x) says both wait."""
    holding = []

    async def worker(first, second):
        async with first:
            holding.append(tid())
            while len(holding) < 2:
                await anyio.sleep(0.01)
            async with second:
                pass

    tg.start_soon(worker, a, b, name="left")
    tg.start_soon(worker, b, a, name="right")
    while not (waiting(a) and waiting(b)):
        await anyio.sleep(0.01)
    return holding


async def locks(tg, truth):
    a, b = anyio.Lock(), anyio.Lock()
    holding = await opposite_order(tg, a, b, lambda x: x._waiters)
    truth["tasks"] = sorted(holding)
    truth["locks"] = sorted(hex(id(x)) for x in (a, b))
    truth["owners"] = {hex(id(x)): hex(id(x._owner_task)) for x in (a, b)}
    truth["names"] = sorted(t.get_name() for t in asyncio.all_tasks()
                            if hex(id(t)) in holding)


async def gone(tg, truth):
    send, receive = anyio.create_memory_object_stream(0)
    started = anyio.Event()
    waiting = []

    async def consumer(rx):
        waiting.append(tid())
        started.set()
        async with rx:
            async for item in rx:
                pass

    tg.start_soon(consumer, receive, name="consumer")
    del receive
    await started.wait()
    while not send.statistics().tasks_waiting_receive:
        await anyio.sleep(0.01)
    state = send._state
    del send  # dropped without close(): open_send_channels stays 1
    gc.collect()
    truth["tasks"] = waiting
    truth["stream"] = hex(id(state))
    truth["open_send"] = state.open_send_channels
    del state


async def ring(tg, truth):
    tx1, rx1 = anyio.create_memory_object_stream(0)
    tx2, rx2 = anyio.create_memory_object_stream(0)
    waiting = []

    async def player(tx, rx):
        waiting.append(tid())
        async with tx, rx:
            await rx.receive()
            await tx.send("never")

    tg.start_soon(player, tx2, rx1, name="ping")
    tg.start_soon(player, tx1, rx2, name="pong")
    states = tx1._state, tx2._state
    del tx1, rx1, tx2, rx2
    while not all(st.waiting_receivers for st in states):
        await anyio.sleep(0.01)
    truth["tasks"] = sorted(waiting)
    truth["streams"] = sorted(hex(id(st)) for st in states)
    del states


async def limiters(tg, truth):
    a, b = anyio.CapacityLimiter(1), anyio.CapacityLimiter(1)
    holding = await opposite_order(tg, a, b, lambda x: x._wait_queue)
    truth["tasks"] = sorted(holding)
    truth["limiters"] = sorted(hex(id(x)) for x in (a, b))
    truth["borrowers"] = {hex(id(x)): [hex(id(t)) for t in x._borrowers] for x in (a, b)}


async def semaphore(tg, truth):
    sem = anyio.Semaphore(1)
    me = []

    async def twice():
        me.append(tid())
        async with sem:
            async with sem:
                pass

    tg.start_soon(twice, name="twice")
    while not sem._waiters:
        await anyio.sleep(0.01)
    truth["tasks"] = me
    truth["semaphore"] = hex(id(sem))
    truth["host"] = tid()


async def healthy(tg, truth):
    send, receive = anyio.create_memory_object_stream(4)
    limiter, sem = anyio.CapacityLimiter(2), anyio.Semaphore(1)
    got = [0]

    async def producer(tx):
        async with tx:
            for i in range(ITEMS):
                await tx.send(i)

    async def consumer(rx):
        async with rx:
            async for item in rx:
                async with limiter:
                    async with sem:
                        got[0] += 1
                        await anyio.sleep(0)

    tg.start_soon(producer, send, name="producer")
    for k in range(3):
        tg.start_soon(consumer, receive.clone(), name="consumer-%d" % k)
    receive.close()
    while got[0] < 1000:
        await anyio.sleep(0.01)


def record(truth):
    with open(sys.argv[1], "w") as f:
        json.dump(truth, f)
    print("READY", flush=True)


async def main():
    truth = {"pid": os.getpid()}
    if MODE == "semaphore":
        # The host leaves the block and waits for its children; a task
        # outside the group says READY once it waits there.
        async def when_host_waits(tg):
            while tg._on_completed_fut is None:
                await asyncio.sleep(0.01)
            truth["members"] = sorted(hex(id(t)) for t in tg._tasks)
            record(truth)

        async with anyio.create_task_group() as tg:
            await semaphore(tg, truth)
            asyncio.get_running_loop().create_task(when_host_waits(tg))
        return
    async with anyio.create_task_group() as tg:
        await {"locks": locks, "gone": gone, "ring": ring, "limiters": limiters,
                "semaphore": semaphore, "healthy": healthy}[MODE](tg, truth)
        record(truth)
        await anyio.sleep_forever()


anyio.run(main)
