"""httpx with max_connections=1 (and no pool timeout): a task keeps a
streamed response open and sends a second request through the same client.
The second request waits for the pool's only connection, which its own
open response holds: it waits for itself. snarl must report a
lock-reacquire of that task on the client's httpcore pool.

The server is a raw asyncio server on 127.0.0.1 that sends the headers of
a chunked response and keeps the body open.

The truth (argv[1]): pid, the task, the pool (the client's transport's
httpcore pool) and how many of its requests hold a connection.
Prints READY once the second request is queued in the pool.
Run: python3.14 httpx_pool_self_wait.py TRUTH.json
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


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = "http://127.0.0.1:%d" % server.sockets[0].getsockname()[1]
    limits = httpx.Limits(max_connections=1)
    truth = {"pid": os.getpid()}
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(None)) as client:
        pool = client._transport._pool
        task = asyncio.ensure_future(fetch_twice(url, client, truth))
        while len(pool._requests) < 2:
            await asyncio.sleep(0.01)
        truth["pool"] = hex(id(pool))
        truth["active"] = sum(1 for r in pool._requests if r.connection is not None)
        with open(sys.argv[1], "w") as f:
            json.dump(truth, f)
        print("READY", flush=True)
        await task


asyncio.run(main())
