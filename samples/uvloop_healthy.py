"""A healthy program on uvloop, whose loop waits in libuv rather than in a
Python selector: snarl must list its tasks and report nothing (exit 0).
- 20 tasks sleeping for an hour, 3 waiting on an Event a timer will set.
Run: python3 uvloop_healthy.py TRUTH.json  (prints READY once settled)"""
import asyncio
import json
import os
import sys

import uvloop

SLEEPERS, WAITERS = 20, 3


async def sleeper():
    await asyncio.sleep(3600)


async def waiter(ev):
    await ev.wait()


async def main():
    ev = asyncio.Event()
    asyncio.get_running_loop().call_later(3600, ev.set)
    tasks = [asyncio.create_task(sleeper(), name="sleeper-%d" % i) for i in range(SLEEPERS)]
    tasks += [asyncio.create_task(waiter(ev), name="waiter-%d" % i) for i in range(WAITERS)]
    await asyncio.sleep(0.1)
    with open(sys.argv[1], "w") as f:
        json.dump({"pid": os.getpid(), "tasks": sorted(t.get_name() for t in tasks)}, f)
    # The loop is idle in libuv from here on: no Python frame moves.
    asyncio.get_running_loop().call_later(0.2, print, "READY")
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    uvloop.run(main())
