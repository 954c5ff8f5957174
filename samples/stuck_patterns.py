"""Tasks stuck for good the way services get stuck, beside controls that
must not be reported: the `stuck` diagnosis (Go's goroutine-leak profile,
golang/go#74609, for asyncio).

Each stuck pattern runs in four forms: its primitive kept as an attribute
of an object (self.q), in a dict, in a list and in a closure. Every task is
strongly held in a module-level `background` set, as the asyncio docs
recommend, so the collector keeps them all: none is weak, and a stuck one
can still be cancelled by whoever holds that set.

Stuck (task names start with "stuck:"), after Go's catalogue:
  queue-drain     a worker drains a queue whose producer returned without
                  a stop marker (Go: a range over a channel never closed)
  one-slot-race   five tasks race to put a result on a Queue(maxsize=1);
                  the caller took the first one and returned, a second
                  fills the slot, three wait for good (Go: the "first
                  response wins" leak)
  go-ahead        a helper waits on a future its parent dropped on an
                  early return
  rpc-dict        callers await futures in a dict whose reader task died
  condition       waiters on a Condition whose notifier returned
  lock-holder     a task inside `async with lock` waits on a future
                  nobody else holds; two readers queue on the lock
  dead-worker     a coordinator waits in Queue.join() for a job whose only
                  worker died with an exception (task_done() never comes);
                  the dead worker task is kept beside the queue, and its
                  exception's traceback still holds the worker's frame,
                  whose locals hold the queue: data, not something that
                  can run
  dead-holder     a task took a Lock with acquire() and died before
                  release(); two readers queue on it, and a gatherer
                  waits for them (one group: the gather and its children)

Controls (names start with "live:"), nothing to report:
  global          an Event reachable from a module global, set by nobody
                  yet, while a live ticker runs (Go's NoLeakGlobal)
  live-setter     a live task holds the object that will set the event
  timer           loop.call_later will set the event
  socket          a pending read on a socket the peer may write to
  thread          another thread holds the event and will set it through
                  call_soon_threadsafe
  ticker          the live ticker itself (it counts)

The truth, written as JSON to argv[1] before READY, is the interpreter's:
every task's id and name, and which are stuck by construction, checked:
over CHECK_SECONDS the stuck tasks' frames do not move (same lasti in every
coroutine of their chain) while the ticker's count does.
Run: python3 stuck_patterns.py TRUTH.json [--uvloop]
"""
import asyncio
import json
import os
import socket
import sys
import threading
import time

CHECK_SECONDS = 0.5
FORMS = ("attr", "dict", "list", "closure")
# A module global, reachable by any code that can still run.
GLOBAL_EVENT = None
background = set()
ticks = 0


def spawn(coro, name):
    task = asyncio.get_running_loop().create_task(coro, name=name)
    background.add(task)
    task.add_done_callback(background.discard)
    return task


class Box:
    """The object that keeps a primitive, in each form."""

    def __init__(self, form, make):
        self.form = form
        if form == "attr":
            self.thing = make()
        elif form == "dict":
            self.things = {"the": make()}
        elif form == "list":
            self.things = [make()]
        else:
            thing = make()
            self.get = lambda: thing

    def prim(self):
        if self.form == "attr":
            return self.thing
        if self.form in ("dict", "list"):
            return self.things["the" if self.form == "dict" else 0]
        return self.get()


async def worker(box):
    while True:
        await box.prim().get()


async def producer(box):
    for i in range(3):
        await box.prim().put(i)


def queue_drain(form):
    box = Box(form, asyncio.Queue)
    spawn(worker(box), "stuck:queue-drain:%s:worker" % form)
    spawn(producer(box), "done:queue-drain:%s:producer" % form)


async def racer(box, i):
    await box.prim().put(i)


async def first_wins(box):
    return await box.prim().get()


def one_slot_race(form):
    box = Box(form, lambda: asyncio.Queue(maxsize=1))
    for i in range(5):
        spawn(racer(box, i), "race:one-slot-race:%s:%d" % (form, i))
    spawn(first_wins(box), "done:one-slot-race:%s:caller" % form)


async def helper(box):
    await box.prim()


async def parent(form):
    loop = asyncio.get_running_loop()
    box = Box(form, loop.create_future)
    spawn(helper(box), "stuck:go-ahead:%s:helper" % form)
    return  # early return: the go-ahead is never given


async def caller(box, key):
    fut = asyncio.get_running_loop().create_future()
    box.prim()[key] = fut
    await fut


async def reader(box):
    await asyncio.sleep(0)
    raise ConnectionError("the connection died")


def rpc_dict(form):
    box = Box(form, dict)
    for key in range(2):
        spawn(caller(box, key), "stuck:rpc-dict:%s:caller%d" % (form, key))
    dead = spawn(reader(box), "done:rpc-dict:%s:reader" % form)
    dead.add_done_callback(lambda t: t.exception())  # it died, as intended


async def cond_waiter(box):
    async with box.prim():
        await box.prim().wait()


async def notifier(box):
    await asyncio.sleep(0)  # returns without notify()


def condition(form):
    box = Box(form, asyncio.Condition)
    for i in range(2):
        spawn(cond_waiter(box), "stuck:condition:%s:waiter%d" % (form, i))
    spawn(notifier(box), "done:condition:%s:notifier" % form)


async def holder(box):
    forever = asyncio.get_running_loop().create_future()
    async with box.prim():
        await forever


async def lock_reader(box):
    async with box.prim():
        pass


def lock_holder(form):
    box = Box(form, asyncio.Lock)
    spawn(holder(box), "stuck:lock-holder:%s:holder" % form)
    for i in range(2):
        spawn(lock_reader(box), "stuck:lock-holder:%s:reader%d" % (form, i))


async def failing_worker(box):
    item = await box.prim().get()
    raise ValueError("cannot handle %r" % (item,))  # no task_done()


async def coordinator(box):
    await box.prim().put("job")
    await box.prim().join()


def dead_worker(form):
    box = Box(form, asyncio.Queue)
    dead = spawn(failing_worker(box), "done:dead-worker:%s:worker" % form)
    dead.add_done_callback(lambda t: t.exception())  # it died, as intended
    box.workers = [dead]
    spawn(coordinator(box), "stuck:dead-worker:%s:coordinator" % form)


async def dying_holder(box):
    await box.prim().acquire()
    raise RuntimeError("the backend is down")  # no release()


async def gatherer(readers):
    await asyncio.gather(*readers)


def dead_holder(form):
    box = Box(form, asyncio.Lock)
    dead = spawn(dying_holder(box), "done:dead-holder:%s:holder" % form)
    dead.add_done_callback(lambda t: t.exception())  # it died, as intended
    box.holders = [dead]
    readers = [spawn(lock_reader(box), "stuck:dead-holder:%s:reader%d" % (form, i))
               for i in range(2)]
    spawn(gatherer(readers), "stuck:dead-holder:%s:gatherer" % form)


async def ticker():
    global ticks
    while True:
        ticks += 1
        await asyncio.sleep(0.02)


async def wait_event(ev):
    await ev.wait()


class Setter:
    def __init__(self):
        self.ev = asyncio.Event()


async def live_setter(s):
    while True:  # runs, and could set s.ev any time
        await asyncio.sleep(0.05)


def controls(keep):
    global GLOBAL_EVENT
    loop = asyncio.get_running_loop()
    GLOBAL_EVENT = asyncio.Event()
    spawn(wait_event(GLOBAL_EVENT), "live:global")
    s = Setter()
    spawn(wait_event(s.ev), "live:live-setter:waiter")
    spawn(live_setter(s), "live:live-setter:setter")
    ev = asyncio.Event()
    loop.call_later(3600, ev.set)
    spawn(wait_event(ev), "live:timer")
    a, b = socket.socketpair()
    keep.append(b)
    a.setblocking(False)
    spawn(loop.sock_recv(a, 1), "live:socket")
    ev2 = asyncio.Event()

    def later():
        time.sleep(3600)
        loop.call_soon_threadsafe(ev2.set)

    threading.Thread(target=later, name="waker", daemon=True).start()
    spawn(wait_event(ev2), "live:thread")


def frames_of(task):
    """(code name, lasti) of every coroutine of the task's chain."""
    out, coro = [], task.get_coro()
    while coro is not None and hasattr(coro, "cr_frame"):
        if coro.cr_frame is not None:
            out.append((coro.cr_code.co_name, coro.cr_frame.f_lasti))
        coro = coro.cr_await
    return out


async def main(truth_path):
    keep = []
    for form in FORMS:
        queue_drain(form)
        one_slot_race(form)
        await parent(form)
        rpc_dict(form)
        condition(form)
        lock_holder(form)
        dead_worker(form)
        dead_holder(form)
    controls(keep)
    tick = asyncio.get_running_loop().create_task(ticker(), name="live:ticker")
    await asyncio.sleep(0.3)
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    # The race: the caller took one put; exactly one racer finished.
    racers = [t for t in tasks if t.get_name().startswith("race:")]
    before = {t: frames_of(t) for t in tasks if not t.done()}
    count = ticks
    await asyncio.sleep(CHECK_SECONDS)
    if ticks <= count:
        raise SystemExit("the ticker did not tick")
    stuck = []
    for t in tasks:
        name = t.get_name()
        if t.done():
            continue
        if name.startswith("live:"):
            continue
        if not (name.startswith("stuck:") or name.startswith("race:")):
            raise SystemExit("task %s should have finished" % name)
        if frames_of(t) != before[t]:
            raise SystemExit("task %s moved: it is not stuck" % name)
        stuck.append(t)
    # One put was taken, one fills the slot: three putters wait.
    if len([t for t in racers if not t.done()]) != 3 * len(FORMS):
        raise SystemExit("the race did not leave three putters waiting")
    doc = {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "pid": os.getpid(),
        "loop": type(asyncio.get_running_loop()).__name__,
        "tasks": {"0x%x" % id(t): t.get_name() for t in tasks if not t.done()},
        "stuck": sorted("0x%x" % id(t) for t in stuck),
        "live": sorted("0x%x" % id(t) for t in tasks
                       if not t.done() and t.get_name().startswith("live:")),
    }
    with open(truth_path, "w") as f:
        json.dump(doc, f, indent=1)
    del tasks, racers, before, stuck, t
    print("READY", flush=True)
    await tick


if __name__ == "__main__":
    factory = None
    if "--uvloop" in sys.argv[2:]:
        import uvloop
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(sys.argv[1]))
