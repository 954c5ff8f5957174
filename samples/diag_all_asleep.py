"""all-asleep: every task waits for something nothing could ever bring,
and no cycle explains it. One event loop, idle in its selector once
settled; no ready callback, no timer, no descriptor but the self-pipe, no
default executor, no other Python thread.

orphan-future  `await fut` on a bare future only it references
orphan-event   `await ev.wait()` on an Event only it references
orphan-queue   `await queue.get()` on an empty Queue only it references
lock-holder    `async with lock:` then awaits a bare future only it
               references (holds the lock for good)
lock-waiter    `async with lock:`: waits on the lock lock-holder holds. A
               chain (lock-waiter -> lock -> lock-holder -> future), not a
               cycle
Task-N         the asyncio.run main task: awaits gather(all of the above)

Expected diagnoses (exactly):
  all-asleep  tasks [Task-N, orphan-future, orphan-event, orphan-queue,
                     lock-holder, lock-waiter]   resources []
Exit status 1. The text report does not start "Found N asyncio deadlock".
Run: python3 diag_all_asleep.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()


async def orphan_future():
    await asyncio.get_running_loop().create_future()


async def orphan_event():
    ev = asyncio.Event()
    await ev.wait()


async def orphan_queue():
    queue = asyncio.Queue()
    await queue.get()


async def hold(lock):
    never = asyncio.get_running_loop().create_future()
    async with lock:
        T.held(lock)
        await never


async def take(lock):
    async with lock:
        pass


def start():
    lock = asyncio.Lock()

    def task(coro, name, kind):
        t = asyncio.create_task(coro, name=name)
        T.expect(t, kind)
        return t

    return [task(orphan_future(), "orphan-future", "future"),
            task(orphan_event(), "orphan-event", "event"),
            task(orphan_queue(), "orphan-queue", "queue"),
            task(hold(lock), "lock-holder", "future"),
            task(take(lock), "lock-waiter", "lock")]


async def main():
    gathering = asyncio.gather(*start())
    T.expect(asyncio.current_task(), "gather", gathering)
    T.expect_all_asleep()
    T.record_when_idle()
    await gathering


if __name__ == "__main__":
    asyncio.run(main())
