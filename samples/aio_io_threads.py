"""Two event loops in two threads, an executor job and I/O waits. Both loops
idle in their selectors once settled; the executor's worker blocks in
blocking_fn on a threading.Lock.

Loop A (MainThread, asyncio.run):
  Task-N        the main task: awaits a bare future
  exec-wait     awaits loop.run_in_executor(pool, blocking_fn): waits on the
                asyncio future chained to the worker's concurrent future
                ("executor"); the worker thread is pool_0
  sock-recv     awaits loop.sock_recv() on one end of a socketpair nobody
                writes to: chain BaseSelectorEventLoop.sock_recv, sock_recv;
                waits on the future the loop's reader callback will resolve
                ("io")
  stream-read   awaits StreamReader.read() on a stream over another
                socketpair: chain StreamReader._wait_for_data,
                StreamReader.read, stream_read; waits on the StreamReader
                ("io", the reader's id)
Loop B (thread loop-b, asyncio.run):
  Task-N        its main task: awaits b-getter directly
  b-getter      awaits Queue.get() on an empty queue of loop B
  b-sleeper     asyncio.sleep(3600) on loop B

snarl must tell the two loops apart (each task's loop id, each loop's
thread), and report the executor and I/O waits.
Run: python3 aio_io_threads.py TRUTH.json  (prints READY once settled)
"""
import asyncio
import concurrent.futures
import socket
import threading

import aio_truth

WORKER = "pool_0"
T = aio_truth.Truth(loops=2, threads={WORKER: "blocking_fn"})


def blocking_fn(gate):
    gate.acquire()


async def exec_wait(pool, gate):
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(pool, blocking_fn, gate)


async def sock_recv(sock):
    loop = asyncio.get_running_loop()
    await loop.sock_recv(sock, 100)


async def stream_read(reader):
    await reader.read(100)


async def main_a():
    loop = asyncio.get_running_loop()
    gate = threading.Lock()
    gate.acquire()
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pool")
    a, a_peer = socket.socketpair()
    a.setblocking(False)
    s, s_peer = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=s)
    forever = loop.create_future()
    t_exec = asyncio.create_task(exec_wait(pool, gate), name="exec-wait")
    T.expect(t_exec, "executor")
    t_sock = asyncio.create_task(sock_recv(a), name="sock-recv")
    T.expect(t_sock, "io")
    t_stream = asyncio.create_task(stream_read(reader), name="stream-read")
    T.expect(t_stream, "io", reader)
    T.expect(asyncio.current_task(), "future", forever)
    T.keep += [gate, pool, a, a_peer, s, s_peer, reader, writer, forever, t_exec, t_sock,
               t_stream]
    T.record_when_idle()
    await forever


async def get(queue):
    await queue.get()


async def nap():
    await asyncio.sleep(3600)


async def main_b():
    queue = asyncio.Queue()
    getter = asyncio.create_task(get(queue), name="b-getter")
    T.expect(getter, "queue", queue)
    sleeper = asyncio.create_task(nap(), name="b-sleeper")
    T.expect(sleeper, "sleep")
    T.expect(asyncio.current_task(), "task", getter)
    T.keep += [queue, getter, sleeper]
    T.record_when_idle()
    await getter


if __name__ == "__main__":
    threading.Thread(target=asyncio.run, args=(main_b(),), name="loop-b", daemon=True).start()
    asyncio.run(main_a())
