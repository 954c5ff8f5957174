"""Healthy: hundreds of tasks sleeping on timers, some behind a gather and
through nested coroutines. One event loop, idle in its selector once
settled. Nothing is stuck: every timer will fire.

sleeper-0 .. sleeper-299   `await asyncio.sleep(3600 + i)`, every third one
                           through two nested coroutines
batch                      awaits gather(batch-0 .. batch-9), each of
                           which sleeps 1800 s
Task-N                     the asyncio.run main task: awaits
                           gather(sleepers and batch)

Expected diagnoses: none. Exit status 0. Also with --fail-on naming every
kind.
Run: python3 diag_healthy_sleepers.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()
SLEEPERS = 300
BATCH = 10


async def nap(delay):
    await asyncio.sleep(delay)


async def deeper(delay):
    await nap(delay)


async def deepest(delay):
    await deeper(delay)


async def batch():
    members = []
    for i in range(BATCH):
        t = asyncio.create_task(nap(1800), name="batch-%d" % i)
        T.expect(t, "sleep")
        members.append(t)
    g = asyncio.gather(*members)
    T.expect(asyncio.current_task(), "gather", g)
    await g


async def main():
    tasks = []
    for i in range(SLEEPERS):
        coro = deepest(3600 + i) if i % 3 == 0 else nap(3600 + i)
        t = asyncio.create_task(coro, name="sleeper-%d" % i)
        T.expect(t, "sleep")
        tasks.append(t)
    tasks.append(asyncio.create_task(batch(), name="batch"))
    gathering = asyncio.gather(*tasks)
    T.expect(asyncio.current_task(), "gather", gathering)
    T.record_when_idle()
    await gathering


if __name__ == "__main__":
    asyncio.run(main())
