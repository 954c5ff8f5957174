"""Tasks of every kind and chains through generators. One event loop, idle in
its selector once settled.

agen-consumer  `async for` over the async generator ticker(), suspended in
               ticker's `await bell.wait()`: chain Event.wait, ticker,
               consume (the async_generator_asend object between consume and
               ticker has no frame)
ticket         `await Ticket(fut)`, a class whose __await__ is a generator
               (`yield from fut`): chain Ticket.__await__, use_ticket
legacy         `await legacy_wait(fut)`, a @types.coroutine generator
wrapped        `await Wrapped(coro)`, whose __await__ returns coro.__await__()
               (a coroutine_wrapper, no frame): chain Event.wait, rings,
               use_wrapped
sub-task       an instance of TracedTask, a subclass of asyncio.Task
py-task        a pure-Python task (asyncio.tasks._PyTask) awaiting a
               pure-Python future (asyncio.futures._PyFuture): chain
               Future.__await__ (the generator of futures.py), py_wait
awaits-py      a C task awaiting py-task directly: chain Future.__await__
               (py-task's own), awaits
Task-N         the asyncio.run main task and one more task created without
               a name; from 3.12 their name is an int counter in memory until
               get_name() is called, which nothing here does
hidden         a pending task removed from asyncio's registry with
               asyncio.tasks._unregister_task: asyncio.all_tasks() does not
               list it; `snarl tasks --all-objects` must find it on the GC
               lists (truth: hidden_tasks); awaits-hidden awaits it directly
finished, cancelled   finished tasks kept alive (truth: done_tasks)
eager-pending  3.12+: started by asyncio.eager_task_factory, suspended in
               Event.wait on its first step
eager-done     3.12+: completed during its eager first step, never pending

snarl must report the pending tasks with their names, types and chains, and
never report a finished task as pending.
Run: python3 aio_task_kinds.py TRUTH.json  (prints READY once settled)
"""
import asyncio
import sys
import types

import aio_truth

T = aio_truth.Truth()


class TracedTask(asyncio.Task):
    pass


class Ticket:
    def __init__(self, fut):
        self._fut = fut

    def __await__(self):
        return (yield from self._fut)


class Wrapped:
    def __init__(self, coro):
        self._coro = coro

    def __await__(self):
        return self._coro.__await__()


@types.coroutine
def legacy_wait(fut):
    return (yield from fut)


async def ticker(bell):
    while True:
        await bell.wait()
        yield 1


async def consume(bell):
    async for _ in ticker(bell):
        pass


async def use_ticket(fut):
    await Ticket(fut)


async def use_legacy(fut):
    await legacy_wait(fut)


async def rings(bell):
    await bell.wait()


async def use_wrapped(bell):
    await Wrapped(rings(bell))


async def never(fut):
    await fut


async def py_wait(fut):
    await fut


async def awaits(task):
    await task


async def quick():
    return 1


async def main():
    loop = asyncio.get_running_loop()
    bell = asyncio.Event()
    futs = [loop.create_future() for _ in range(6)]
    pyfut = asyncio.futures._PyFuture(loop=loop)

    def task(coro, name, kind, obj=None):
        t = asyncio.create_task(coro, name=name)
        T.expect(t, kind, obj)
        return t

    tasks = [
        task(consume(bell), "agen-consumer", "event", bell),
        task(use_ticket(futs[0]), "ticket", "future", futs[0]),
        task(use_legacy(futs[1]), "legacy", "future", futs[1]),
        task(use_wrapped(bell), "wrapped", "event", bell),
    ]
    sub = TracedTask(never(futs[2]), loop=loop, name="sub-task")
    T.expect(sub, "future", futs[2])
    py = asyncio.tasks._PyTask(py_wait(pyfut), loop=loop, name="py-task")
    T.expect(py, "future", pyfut)
    unnamed = asyncio.create_task(never(futs[3]))
    T.expect(unnamed, "future", futs[3])
    tasks += [sub, py, unnamed, task(awaits(py), "awaits-py", "task", py)]

    hidden = asyncio.create_task(never(futs[4]), name="hidden")
    asyncio.tasks._unregister_task(hidden)
    T.expect_hidden(hidden, "future", futs[4])
    tasks += [hidden, task(awaits(hidden), "awaits-hidden", "task", hidden)]

    finished = asyncio.create_task(quick(), name="finished")
    cancelled = asyncio.create_task(never(futs[5]), name="cancelled")
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait([finished, cancelled])
    T.expect_done(finished)
    T.expect_done(cancelled)

    if sys.version_info >= (3, 12):
        loop.set_task_factory(asyncio.eager_task_factory)
        done = asyncio.create_task(quick(), name="eager-done")
        pending = asyncio.create_task(rings(bell), name="eager-pending")
        loop.set_task_factory(None)
        if not done.done() or pending.done():
            aio_truth.fail("eager tasks did not run eagerly")
        T.expect_done(done)
        T.expect(pending, "event", bell)
        tasks.append(pending)
    else:
        T.skip("eager tasks: asyncio.eager_task_factory needs 3.12+")

    forever = loop.create_future()
    T.expect(asyncio.current_task(), "future", forever)
    T.keep += [bell, pyfut, forever] + futs + tasks
    T.record_when_idle()
    await forever


if __name__ == "__main__":
    asyncio.run(main())
