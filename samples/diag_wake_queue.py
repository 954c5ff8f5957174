"""wake-cycle through a queue: a producer blocked on a full queue's put()
and a consumer waiting on an Event the producer would set only after its
put() returns; the consumer would get() from the queue only after the
event. One event loop, idle in its selector once settled; no timers, no
descriptors but the self-pipe, no other Python thread.

producer  `await queue.put(2)` on a Queue(maxsize=1) already holding one
          item: waits on the queue (Queue.put); would then `ready.set()`
consumer  `await ready.wait()`: waits on the Event; would then
          `await queue.get()`
Task-N    the asyncio.run main task: awaits gather(producer, consumer)

Resolvers: queue [consumer], ready [producer].

Expected diagnoses (exactly):
  wake-cycle  tasks [producer, consumer]           resources [queue, ready]
  all-asleep  tasks [Task-N, producer, consumer]   resources []
Exit status 1. The text report starts "Found 1 asyncio deadlock".
Run: python3 diag_wake_queue.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()


async def produce(queue, ready):
    await queue.put(2)
    ready.set()


async def consume(queue, ready):
    await ready.wait()
    return await queue.get()


def start():
    """The queue and the event exist only in the tasks' frames."""
    queue, ready = asyncio.Queue(maxsize=1), asyncio.Event()
    queue.put_nowait(1)
    p = asyncio.create_task(produce(queue, ready), name="producer")
    c = asyncio.create_task(consume(queue, ready), name="consumer")
    T.expect(p, "queue")
    T.expect(c, "event")
    T.expect_diagnosis("wake-cycle", [p, c], [queue, ready])
    return [p, c]


async def main():
    gathering = asyncio.gather(*start())
    T.expect(asyncio.current_task(), "gather", gathering)
    T.expect_all_asleep()
    T.record_when_idle()
    await gathering


if __name__ == "__main__":
    asyncio.run(main())
