"""Healthy: a TCP server (asyncio.start_server on 127.0.0.1) with a few
connected clients, all idle. One event loop, idle in its selector once
settled; the listening socket and the connections are watched descriptors.

conn-0 .. conn-2     the server's handler tasks (renamed on entry):
                     `await reader.read(100)` on their StreamReader
client-0 .. client-2 the clients (asyncio.open_connection on the same
                     loop): `await reader.read(100)`, nothing is ever sent
Task-N               the asyncio.run main task: in Server.serve_forever,
                     awaiting the server's own future

Expected diagnoses: none. Exit status 0.
Run: python3 diag_healthy_server.py TRUTH.json  (prints READY once settled)
"""
import asyncio

import diag_truth

T = diag_truth.DiagTruth()
CLIENTS = 3


async def handle(reader, writer):
    me = asyncio.current_task()
    me.set_name("conn-%d" % handle.count)
    handle.count += 1
    T.expect(me, "io", reader)
    T.keep.append(writer)
    await reader.read(100)


handle.count = 0


async def client(reader):
    await reader.read(100)


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for i in range(CLIENTS):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t = asyncio.create_task(client(reader), name="client-%d" % i)
        T.expect(t, "io", reader)
        T.keep += [reader, writer]
    T.keep.append(server)
    T.expect(asyncio.current_task(), "future")
    T.record_when_idle()
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
