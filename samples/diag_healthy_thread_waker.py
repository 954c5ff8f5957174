"""Healthy: the loop has no timer and no descriptor, but another Python
thread holds the loop and the events and will wake them with
loop.call_soon_threadsafe() once its own threading.Lock is released. One event
loop, idle in its selector once settled.

handoff-0, handoff-1   `await ev.wait()` on events the thread `waker`
                       references (and only it)
pair-a                 waits on ev_a and would set ev_b; pair-b waits on
pair-b                 ev_b and would set ev_a; the thread also references
                       ev_a: the pair has a resolver outside it
Task-N                 the asyncio.run main task: awaits gather(all)
thread waker           blocked acquiring a held threading.Lock `go`
                       (in wait_for_go), then calls
                       loop.call_soon_threadsafe(ev.set) for each event

Expected diagnoses: none (another Python thread can call into the loop:
no all-asleep; the thread is a resolver of every event: no wake-cycle).
Exit status 0.
Run: python3 diag_healthy_thread_waker.py TRUTH.json  (prints READY once settled)
"""
import asyncio
import threading

import diag_truth

T = diag_truth.DiagTruth(threads={"waker": "wait_for_go"})


def wait_for_go(go):
    go.acquire()


def waker(go, loop, events):
    wait_for_go(go)
    for ev in events:
        loop.call_soon_threadsafe(ev.set)


async def ring(ev):
    await ev.wait()


async def relay(mine, other):
    await mine.wait()
    other.set()


def start(go):
    loop = asyncio.get_running_loop()
    e0, e1, ev_a, ev_b = (asyncio.Event() for _ in range(4))
    threading.Thread(target=waker, args=(go, loop, [e0, e1, ev_a]), name="waker",
                     daemon=True).start()

    def task(coro, name):
        t = asyncio.create_task(coro, name=name)
        T.expect(t, "event")
        return t

    return [task(ring(e0), "handoff-0"), task(ring(e1), "handoff-1"),
            task(relay(ev_a, ev_b), "pair-a"), task(relay(ev_b, ev_a), "pair-b")]


async def main():
    go = threading.Lock()
    go.acquire()
    T.keep.append(go)
    gathering = asyncio.gather(*start(go))
    T.expect(asyncio.current_task(), "gather", gathering)
    T.record_when_idle()
    await gathering


if __name__ == "__main__":
    asyncio.run(main())
