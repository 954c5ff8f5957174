"""httpx with max_connections=1 (and no pool timeout): a task keeps a
streamed response open and sends a second request through the same client.
The second request waits for the pool's only connection, which its own
open response holds: it waits for itself. snarl must report a
lock-reacquire of that task on the client's httpcore pool.

With "cycle" as argv[2]: task "streamer" keeps the streamed response open
and waits for an asyncio.Lock that task "sender" holds while it sends its
request through the same pool: a lock-cycle through the lock and the pool.

The server is a raw asyncio server on 127.0.0.1 that sends the headers of
a chunked response and keeps the body open.

The truth (argv[1]): pid, the task (cycle: the two tasks and the lock),
the pool (the client's transport's httpcore pool) and how many of its
requests hold a connection.
Prints READY once the second request is queued in the pool (cycle: and
the lock has its waiter).
Run: python3.14 httpx_pool_self_wait.py TRUTH.json [cycle]
"""
import asyncio
import json
import os
import sys

import httpx


async def serve(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await writer.drain()
    await asyncio.Event().wait()  # the body never ends


async def fetch_twice(url, client, truth):
    async with client.stream("GET", url + "/first") as response:
        truth["task"] = hex(id(asyncio.current_task()))
        await client.get(url + "/second")


async def cycle(url, client, truth):
    lock, streaming = asyncio.Lock(), asyncio.Event()

    async def streamer():
        async with client.stream("GET", url + "/first") as response:
            streaming.set()
            async with lock:
                pass

    async def sender():
        async with lock:
            await streaming.wait()
            await client.get(url + "/second")

    a = asyncio.create_task(streamer(), name="streamer")
    b = asyncio.create_task(sender(), name="sender")
    while not lock._waiters:
        await asyncio.sleep(0.01)
    truth["tasks"] = sorted(hex(id(t)) for t in (a, b))
    truth["lock"] = hex(id(lock))
    await asyncio.gather(a, b)


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = "http://127.0.0.1:%d" % server.sockets[0].getsockname()[1]
    limits = httpx.Limits(max_connections=1)
    truth = {"pid": os.getpid()}
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(None)) as client:
        pool = client._transport._pool
        run = cycle if len(sys.argv) > 2 and sys.argv[2] == "cycle" else fetch_twice
        task = asyncio.ensure_future(run(url, client, truth))
        while len(pool._requests) < 2 or (run is cycle and "lock" not in truth):
            await asyncio.sleep(0.01)
        truth["pool"] = hex(id(pool))
        truth["active"] = sum(1 for r in pool._requests if r.connection is not None)
        with open(sys.argv[1], "w") as f:
            json.dump(truth, f)
        print("READY", flush=True)
        await task


asyncio.run(main())
