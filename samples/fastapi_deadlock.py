"""A FastAPI app on uvicorn that deadlocks: GET /transfer takes lock A then
lock B, GET /report takes B then A, and two requests arrive together. The
endpoints run in uvicorn's per-request tasks (named Task-N); snarl must
report one lock-cycle of exactly those two tasks and two locks, and show
each task's request (method, path, client address) instead of only its name.

With "healthy" as argv[2]: the same app with both endpoints taking the
locks in the same order, serving a client loop while snarl reads it; the
truth then only has the pid, and nothing must be reported.

The truth (argv[1]): pid, the two handler tasks with the request each one
serves (recorded from inside the endpoint: its task, scope path and
client), the two locks. Prints READY once both handlers wait for their
second lock (healthy: once the client loop has completed requests).
Run: python3.14 fastapi_deadlock.py TRUTH.json [healthy]
"""
import asyncio
import json
import os
import sys

import uvicorn
from fastapi import FastAPI, Request

HEALTHY = len(sys.argv) > 2 and sys.argv[2] == "healthy"
# The client loop's bound: it stops on its own long after any test.
CLIENT_REQUESTS = 100000
A, B = asyncio.Lock(), asyncio.Lock()
HANDLERS = {}
BOTH_HOLD = asyncio.Event()
app = FastAPI()


async def two_locks(request: Request, first, second):
    if not HEALTHY:
        HANDLERS[request.url.path] = {
            "task": hex(id(asyncio.current_task())),
            "method": request.method,
            "path": request.scope["path"],
            "client": "%s:%d" % (request.client.host, request.client.port),
        }
    async with first:
        if not HEALTHY:
            if len(HANDLERS) == 2:
                BOTH_HOLD.set()
            await BOTH_HOLD.wait()
        async with second:
            return {"ok": True}


@app.get("/transfer")
async def transfer(request: Request):
    return await two_locks(request, A, B)


@app.get("/report")
async def report(request: Request):
    return await two_locks(request, B, A) if not HEALTHY else await two_locks(request, A, B)


async def get(port, path):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def client_loop(port, done):
    for i in range(CLIENT_REQUESTS):
        await get(port, "/transfer" if i % 2 else "/report")
        done[0] += 1


async def main():
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    if HEALTHY:
        done = [0]
        clients = [asyncio.ensure_future(client_loop(port, done)) for _ in range(2)]
        while done[0] < 50:
            await asyncio.sleep(0.01)
        truth = {"pid": os.getpid()}
    else:
        calls = [asyncio.ensure_future(get(port, p)) for p in ("/transfer", "/report")]
        while not (A._waiters and B._waiters):
            await asyncio.sleep(0.01)
        truth = {"pid": os.getpid(), "handlers": HANDLERS,
                 "locks": sorted(hex(id(lock)) for lock in (A, B))}
    with open(sys.argv[1], "w") as f:
        json.dump(truth, f)
    print("READY", flush=True)
    await serving


asyncio.run(main())
