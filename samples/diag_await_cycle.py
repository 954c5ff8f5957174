"""await-cycle: tasks awaiting each other in a ring, built by creating the
tasks first and letting each await the next one through a shared dict. One
event loop, idle in its selector once settled; no timers, no descriptors
but the self-pipe, no other Python thread.

ring-a   `await peers["ring-b"]`: awaits the task ring-b directly
ring-b   awaits ring-c
ring-c   awaits ring-a
duo-a    awaits duo-b
duo-b    awaits duo-a
tail     awaits ring-a: waits on the ring without being part of it
Task-N   the asyncio.run main task: awaits tail directly

Expected diagnoses (exactly; one per ring, no combinator on either):
  await-cycle  tasks [ring-a, ring-b, ring-c]          resources []
  await-cycle  tasks [duo-a, duo-b]                    resources []
  all-asleep   tasks [Task-N, ring-a, ring-b, ring-c, duo-a, duo-b, tail]
                                                       resources []
Exit status 1. The text report starts "Found 2 asyncio deadlocks".
Run: python3 diag_await_cycle.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()
RINGS = (("ring-a", "ring-b"), ("ring-b", "ring-c"), ("ring-c", "ring-a"),
         ("duo-a", "duo-b"), ("duo-b", "duo-a"), ("tail", "ring-a"))


async def link(peers, nxt):
    await peers[nxt]


async def main():
    peers = {}
    for name, nxt in RINGS:
        peers[name] = asyncio.create_task(link(peers, nxt), name=name)
    # Every task is created before any of them runs: each finds the next.
    for name, nxt in RINGS:
        T.expect(peers[name], "task", peers[nxt])
    T.expect_diagnosis("await-cycle", [peers[n] for n in ("ring-a", "ring-b", "ring-c")])
    T.expect_diagnosis("await-cycle", [peers["duo-a"], peers["duo-b"]])
    T.expect(asyncio.current_task(), "task", peers["tail"])
    T.expect_all_asleep()
    T.record_when_idle()
    await peers["tail"]


if __name__ == "__main__":
    asyncio.run(main())
