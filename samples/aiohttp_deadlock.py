"""A real aiohttp service that deadlocks: two request handlers take the same
two asyncio locks in opposite orders, and two requests arrive together.
The server's own machinery (aiohttp's request handler tasks, its keep-alive
and connection tasks, the client session awaiting the responses) sits
around the two stuck handlers, as in production.

With "uvloop" as argv[2] it runs on uvloop's loop, whose handles are C.

The truth (argv[1]): the two handler tasks (recorded by each handler from
inside itself, with the path each serves) and the two locks; snarl must report one lock-cycle of
exactly those. Prints READY once both handlers wait for their second lock.
Run: python3.14 aiohttp_deadlock.py TRUTH.json [uvloop]
"""
import asyncio
import json
import os
import sys

from aiohttp import ClientSession, web

ACCOUNTS = asyncio.Lock(), asyncio.Lock()
HANDLERS = {}
BOTH_HOLD = asyncio.Event()


async def transfer(request):
    """POST /transfer/{src}/{dst}: locks the source account, then the
    destination. Two transfers in opposite directions deadlock."""
    src, dst = int(request.match_info["src"]), int(request.match_info["dst"])
    HANDLERS[request.path] = hex(id(asyncio.current_task()))
    async with ACCOUNTS[src]:
        if len(HANDLERS) == 2:
            BOTH_HOLD.set()
        await BOTH_HOLD.wait()
        async with ACCOUNTS[dst]:
            return web.Response(text="done")


async def waiting_for_second_lock():
    """Both handlers wait in the second lock's acquire."""
    while True:
        if all(lock._waiters for lock in ACCOUNTS):
            return
        await asyncio.sleep(0.01)


async def main():
    app = web.Application()
    app.router.add_post("/transfer/{src}/{dst}", transfer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with ClientSession() as session:
        calls = [asyncio.ensure_future(session.post("http://127.0.0.1:%d/transfer/%d/%d"
                                                    % (port, a, b)))
                 for a, b in ((0, 1), (1, 0))]
        await waiting_for_second_lock()
        with open(sys.argv[1], "w") as f:
            json.dump({"pid": os.getpid(), "handlers": sorted(HANDLERS.values()),
                       "requests": HANDLERS,  # the path each handler serves
                       "locks": sorted(hex(id(lock)) for lock in ACCOUNTS),
                       "loop": type(asyncio.get_running_loop()).__name__}, f)
        print("READY", flush=True)
        await asyncio.gather(*calls)


if len(sys.argv) > 2 and sys.argv[2] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
