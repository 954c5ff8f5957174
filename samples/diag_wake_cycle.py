"""wake-cycle: two tasks each waiting on an asyncio.Event only the other
would set. Each task holds the other's event in a local (`other`); nothing
else references the events. One event loop, idle in its selector once
settled; no timers, no descriptors but the self-pipe, no other Python
thread.

ping     `await mine.wait()` on ev_ping, then would `other.set()` ev_pong
pong     `await mine.wait()` on ev_pong, then would `other.set()` ev_ping
Task-N   the asyncio.run main task: awaits gather(ping, pong)

Resolvers (RESOURCE "resolvers"): ev_ping [pong], ev_pong [ping].

Expected diagnoses (exactly):
  wake-cycle  tasks [ping, pong]           resources [ev_ping, ev_pong]
  all-asleep  tasks [Task-N, ping, pong]   resources []
Exit status 1. The text report starts "Found 1 asyncio deadlock".
Run: python3 diag_wake_cycle.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()


async def relay(mine, other):
    await mine.wait()
    other.set()


def start():
    """The events exist only in the tasks' frames."""
    ev_ping, ev_pong = asyncio.Event(), asyncio.Event()
    ping = asyncio.create_task(relay(ev_ping, ev_pong), name="ping")
    pong = asyncio.create_task(relay(ev_pong, ev_ping), name="pong")
    T.expect(ping, "event")
    T.expect(pong, "event")
    T.expect_diagnosis("wake-cycle", [ping, pong], [ev_ping, ev_pong])
    return [ping, pong]


async def main():
    gathering = asyncio.gather(*start())
    T.expect(asyncio.current_task(), "gather", gathering)
    T.expect_all_asleep()
    T.record_when_idle()
    await gathering


if __name__ == "__main__":
    asyncio.run(main())
