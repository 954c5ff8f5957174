"""Shared by the asyncio samples (samples/aio_*.py): wait until every event
loop of the sample is at rest, record the ground truth of every task as the
interpreter itself reports it, print READY, and block for good.

The truth is recorded twice and must agree:
1. on each loop's own thread, from a loop callback (so no task is running)
   once the loop is settled: nothing in loop._ready and every pending task
   suspended on a future (task._fut_waiter), twice in a row STABLE_INTERVAL
   apart with the same snapshot; a loop whose thread is to stay blocked
   inside a task records from that task instead (Truth.record_running);
2. on the watcher thread, once every loop thread sits in its selector's
   select() call (or, for a blocked loop, in the function the sample names)
   and no thread has moved between two polls. The watcher then writes the
   JSON truth to argv[1] and prints READY. A difference between the two
   snapshots means the state moved after it was recorded: the sample exits
   with an error instead of lying.

What is recorded for each pending task of asyncio.all_tasks(loop):
- id, name, type, loop, cancels (task.cancelling()), from the interpreter.
  Unnamed C tasks keep their name as an int counter until get_name() is
  first called (3.12+); the truth reads that int through gc.get_referents
  instead of calling get_name(), so snarl sees the task unchanged.
- stack: the coroutine chain innermost first, exactly as the interpreter
  links it: cr_await of a coroutine, gi_yieldfrom of a generator, ag_await
  of an async generator. asyncio's own coroutines (Lock.acquire, sleep,
  wait_for, TaskGroup.__aexit__, Queue.get...) and generator frames such as
  the pure-Python Future.__await__ are in the chain because cr_await
  reaches them. Objects without a frame are crossed without adding one:
  async_generator_asend/athrow and coroutine_wrapper lead to the generator
  or coroutine gc.get_referents() names; anything else ends the chain.
  A running task (the loop thread is inside it) has as stack the frames of
  the loop thread from the innermost one down to the task's coroutine frame
  (its cr_frame), which are the frames snarl must mark "task": ID in the
  thread's stack.
- waits {kind, id}: what task._fut_waiter (the interpreter's record of the
  future the task is suspended on) stands for, derived from the interpreter
  (see Truth._derive) and checked against what the sample declared with
  Truth.expect(): both must agree or the sample fails. Kinds and ids follow
  docs/json.md: the primitive when there is one (Lock, Semaphore,
  Condition, Event, Queue, Barrier, TaskGroup, StreamReader), else the
  future itself (sleep, gather, shield, bare future, executor, sock_*; the
  3.11 wait_for waiter future as "timeout"; asyncio.wait's waiter future as
  "wait"); a task awaited directly is
  {"kind": "task", "id": that task}.
- awaits: [waits.id] (a task or a resource); awaited_by: the tasks that
  wait on this task directly or through a gather, TaskGroup, shield, 3.11
  wait_for or asyncio.wait whose members include it (the sample's model,
  derived from waits); awaited_by_interpreter (3.14+):
  task._asyncio_awaited_by.

Resources: one per waits target that is not a task, with kind, type,
members (gather children, TaskGroup tasks, shield inner, 3.11 wait_for
inner, the tasks asyncio.wait waits for), waiters (tasks waiting on it)
and, for sleeps, 3.11 wait_for and asyncio.wait with a timeout, the
deadline of the loop timer (TimerHandle.when(), i.e. loop.time() +
delay at the call). "timeouts" lists the asyncio.Timeout objects armed on
each loop (asyncio.timeout(), wait_for from 3.12) with their deadline.
"""
import asyncio
import gc
import json
import os
import sys
import threading
import time
import types

import snarl_sample

try:
    import _asyncio
    C_TASK = _asyncio.Task
except ImportError:  # pragma: no cover (every interpreter of the matrix has it)
    C_TASK = ()

# How long the sample may take to settle before it gives up.
SETTLE_TIMEOUT = snarl_sample.SETTLE_TIMEOUT
# Two snapshots this far apart must agree before a loop counts as settled.
STABLE_INTERVAL = snarl_sample.STABLE_INTERVAL
WATCHER = snarl_sample.WATCHER
# Longest coroutine chain followed: far beyond any sample's.
CHAIN_LIMIT = 1000

PY_TASK = asyncio.tasks._PyTask
PY_FUTURE = asyncio.futures._PyFuture
ASYNCIO_DIR = os.path.dirname(asyncio.__file__)

_BLOCK = threading.Lock()
_BLOCK.acquire()


def hexid(obj):
    return hex(id(obj))


def fail(msg):
    """Ends the sample: a truth that may be wrong is worse than none."""
    print("SAMPLE ERROR: %s" % msg, file=sys.stderr, flush=True)
    os._exit(3)


def frame_dict(frame):
    code = frame.f_code
    return {"function": code.co_qualname, "file": code.co_filename, "line": frame.f_lineno}


def is_task(obj):
    return isinstance(obj, (asyncio.Task, PY_TASK)) or \
        (asyncio.isfuture(obj) and hasattr(obj, "get_coro"))


def current_task(loop):
    """The task running on loop. From 3.14 the C current_task() does not
    know pure-Python tasks: they record themselves in the pure-Python
    asyncio.tasks._current_tasks (before 3.14 the same dict as C's)."""
    return asyncio.current_task(loop) or getattr(asyncio.tasks, "_current_tasks", {}).get(loop)


def creation_site(task):
    """file:line of the innermost frame outside asyncio itself in the
    _source_traceback debug mode kept (the caller of create_task, not
    create_task); None when there is none."""
    tb = [f for f in getattr(task, "_source_traceback", None) or ()
          if "/asyncio/" not in f.filename]
    return "%s:%d" % (tb[-1].filename, tb[-1].lineno) if tb else None


def task_name(task):
    """The name without materializing it: from 3.12 an unnamed C task keeps
    an int counter until get_name() is called (the name is then "Task-N")."""
    if isinstance(task, C_TASK):
        ints = [r for r in gc.get_referents(task) if type(r) is int]
        if len(ints) == 1:
            return "Task-%d" % ints[0]
        if ints:
            fail("several ints among the referents of %r" % task)
    return task.get_name()


def walk(coro):
    """The coroutine chain from the task's coroutine inwards, as
    (object, frame) pairs, outermost first, and the object the innermost
    frame awaits (None when it awaits nothing the walk can follow)."""
    out, obj, seen = [], coro, set()
    while obj is not None and len(out) < CHAIN_LIMIT:
        if id(obj) in seen:
            fail("await cycle in a chain")
        seen.add(id(obj))
        if isinstance(obj, types.CoroutineType):
            frame, nxt = obj.cr_frame, obj.cr_await
        elif isinstance(obj, types.GeneratorType):
            frame, nxt = obj.gi_frame, obj.gi_yieldfrom
        elif isinstance(obj, types.AsyncGeneratorType):
            frame, nxt = obj.ag_frame, obj.ag_await
        elif type(obj).__name__ in ("async_generator_asend", "async_generator_athrow",
                                    "coroutine_wrapper"):
            inner = [r for r in gc.get_referents(obj)
                     if isinstance(r, (types.CoroutineType, types.AsyncGeneratorType))]
            if len(inner) != 1:
                fail("cannot cross %s: %r" % (type(obj).__name__, inner))
            obj = inner[0]
            continue
        else:
            return out, obj
        if frame is None:  # finished: nothing below it
            return out, None
        out.append((obj, frame))
        obj = nxt
    return out, None


def awaited_future(terminal):
    """The future an object at the end of a chain stands for: a FutureIter
    names its future through gc.get_referents."""
    if terminal is None:
        return None
    if asyncio.isfuture(terminal):
        return terminal
    if type(terminal).__name__ == "FutureIter":
        futs = [r for r in gc.get_referents(terminal) if asyncio.isfuture(r)]
        return futs[0] if len(futs) == 1 else None
    return None


def callbacks_of(fut):
    cbs = getattr(fut, "_callbacks", None) or []
    return [cb[0] if isinstance(cb, tuple) else cb for cb in cbs]


def closure_var(fn, name):
    code = getattr(fn, "__code__", None)
    if code is None or name not in code.co_freevars:
        return None
    return fn.__closure__[code.co_freevars.index(name)].cell_contents


PRIMITIVES = [
    ("barrier", asyncio.Barrier, lambda p, f: f in (p._cond._waiters or ())),
    ("condition", asyncio.Condition, lambda p, f: f in (p._waiters or ())),
    ("semaphore", asyncio.Semaphore, lambda p, f: f in (p._waiters or ())),
    ("lock", asyncio.Lock, lambda p, f: f in (p._waiters or ())),
    ("event", asyncio.Event, lambda p, f: f in (p._waiters or ())),
    ("queue", asyncio.Queue, lambda p, f: f in (p._getters or ()) or f in (p._putters or ())),
]


def in_asyncio(frame):
    return os.path.dirname(frame.f_code.co_filename) == ASYNCIO_DIR


class Truth:
    """One per sample process. loops: how many event loops will record.
    threads: {thread name: function} for other threads that must be blocked
    in that function (e.g. an executor worker) before READY."""

    def __init__(self, loops=1, threads=None):
        self.loops_expected = loops
        self.threads = dict(threads or {})
        self.expected = {}     # id(task) -> (task, kind, obj or None)
        self.hidden = []       # pending tasks no registry holds
        self.done = []         # finished tasks kept alive on purpose
        self.keep = []         # strong references: nothing here may be collected
        self.skipped = []      # shapes this interpreter cannot show, with why
        self.unstarted = set()  # ids of tasks scheduled but never started
        self.records = []      # (loop, snapshot, thread ident, blocked_in, running task)
        self.cond = threading.Condition()
        threading.Thread(target=self._watch, name=WATCHER, daemon=True).start()

    # --- what the sample declares -------------------------------------
    def expect(self, task, kind, obj=None):
        """task waits on obj (a task or resource) of this kind; obj None:
        take the id the interpreter shows (e.g. a sleep's own future);
        kind None: the task waits on nothing (running or never started)."""
        self.keep.append(task)
        self.keep.append(obj)
        self.expected[id(task)] = (task, kind, obj)

    def expect_hidden(self, task, kind, obj=None):
        self.expect(task, kind, obj)
        self.hidden.append(task)

    def expect_unstarted(self, task):
        self.expect(task, None)
        self.unstarted.add(id(task))

    def expect_done(self, task):
        self.keep.append(task)
        self.done.append(task)

    def skip(self, why):
        self.skipped.append(why)

    # --- loop side ------------------------------------------------------
    def record_when_idle(self, loop=None):
        """Call from code running on the loop: records from a callback once
        the loop is settled; the loop then goes idle in its selector."""
        loop = loop or asyncio.get_running_loop()
        deadline = time.monotonic() + SETTLE_TIMEOUT
        loop.call_soon(self._poll, loop, None, deadline)

    def _poll(self, loop, previous, deadline):
        snap = self._snapshot(loop, None) if self._settled(loop, None) else None
        if snap is not None and snap == previous:
            self._store(loop, snap, None, None)
            return
        if time.monotonic() > deadline:
            fail("loop %s did not settle: %s" % (hexid(loop), self._why_not(loop, None)))
        loop.call_later(STABLE_INTERVAL, self._poll, loop, snap, deadline)

    async def record_running(self, blocked_in, before_block=None):
        """Call from the task that will block the loop thread: waits until
        every other task is settled, runs before_block() (e.g. to schedule
        a task that will never start), records, and returns; the caller
        must then go straight into the function named blocked_in."""
        loop = asyncio.get_running_loop()
        me = current_task(loop)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        previous = None
        while True:
            snap = self._snapshot(loop, me) if self._settled(loop, me) else None
            if snap is not None and snap == previous:
                break
            if time.monotonic() > deadline:
                fail("loop did not settle: %s" % self._why_not(loop, me))
            previous = snap
            await asyncio.sleep(STABLE_INTERVAL)
        if before_block is not None:
            before_block()
        self._store(loop, self._snapshot(loop, me), blocked_in, me)

    def _store(self, loop, snap, blocked_in, running):
        with self.cond:
            self.records.append((loop, snap, threading.get_ident(), blocked_in, running))
            self.cond.notify_all()

    def _tasks(self, loop):
        """The pending tasks of loop: asyncio.all_tasks(loop), plus those of
        asyncio's pure-Python registries (from 3.14 the C all_tasks() does
        not look there, where asyncio.tasks._PyTask registers), plus the
        sample's hidden tasks."""
        pending = set(asyncio.all_tasks(loop))
        for name in ("_scheduled_tasks", "_eager_tasks", "_all_tasks"):
            registry = getattr(asyncio.tasks, name, None) or ()
            pending |= {t for t in list(registry) if t.get_loop() is loop and not t.done()}
        pending |= {t for t in self.hidden if t.get_loop() is loop and not t.done()}
        return sorted(pending, key=id)

    def _settled(self, loop, running):
        return self._why_not(loop, running) is None

    def _why_not(self, loop, running):
        """None when the loop is settled: nothing ready to run and every
        pending task (but the running one and those declared unstarted)
        suspended on a future and expected by the sample."""
        ready = [h for h in loop._ready if not h._cancelled]
        if ready:
            return "%d ready callbacks" % len(ready)
        for t in self._tasks(loop):
            if t is running or id(t) in self.unstarted:
                continue
            if id(t) not in self.expected:
                return "task %r has no expectation" % t
            if t._fut_waiter is None:
                return "task %s not suspended on a future" % task_name(t)
        return None

    # --- the snapshot -----------------------------------------------------
    def _snapshot(self, loop, running):
        tasks = self._tasks(loop)
        hidden = {id(t) for t in self.hidden}
        out, resources = [], {}
        for t in tasks:
            out.append(self._task(loop, t, t is running, resources))
        by_id = {d["id"]: d for d in out}
        # awaited_by: the sample's model, from waits and resource members.
        for d in out:
            w = d["waits"]
            if w is None:
                continue
            targets = [w["id"]] if w["kind"] == "task" else resources[w["id"]]["members"]
            for child in targets:
                if child in by_id:
                    by_id[child]["awaited_by"].append(d["id"])
        for d in out:
            d["awaited_by"].sort()
            if d["waits"] is not None and d["waits"]["kind"] != "task":
                resources[d["waits"]["id"]]["waiters"].append(d["id"])
        for r in resources.values():
            r["waiters"].sort()
        return {
            "loop": {"id": hexid(loop), "type": type(loop).__name__,
                     "running_task": hexid(running) if running is not None else None},
            "tasks": [d for d in out if int(d["id"], 16) not in hidden],
            "hidden_tasks": [d for d in out if int(d["id"], 16) in hidden],
            "resources": sorted(resources.values(), key=lambda r: r["id"]),
            "timeouts": self._timeouts(loop),
        }

    def _task(self, loop, t, running, resources):
        coro = t.get_coro()
        chain, terminal = walk(coro)
        fut = t._fut_waiter
        if fut is not None:
            named = awaited_future(terminal)
            # A generator may yield the future itself (Future.__await__ of a
            # pure-Python future yields self): no FutureIter then.
            if named is not None and named is not fut:
                fail("%s: chain ends at %r, task waits on %r" % (task_name(t), named, fut))
        d = {
            "id": hexid(t), "name": task_name(t), "type": type(t).__name__,
            # False for a task only asyncio's pure-Python registry lists
            # (3.14+: asyncio.tasks._PyTask) and for hidden tasks.
            "in_all_tasks": t in asyncio.all_tasks(loop),
            "module": type(t).__module__, "c_task": isinstance(t, C_TASK),
            "state": "pending", "loop": hexid(t.get_loop()), "cancels": t.cancelling(),
            "stack": None if running else [frame_dict(f) for _, f in reversed(chain)],
            "running": running, "waits": None, "awaits": [], "awaited_by": [],
            "awaited_by_interpreter": None,
            # Where the task was created: asyncio debug mode keeps it.
            "created_at": creation_site(t),
        }
        if sys.version_info >= (3, 14):
            d["awaited_by_interpreter"] = sorted(hexid(x) for x in (t._asyncio_awaited_by or ()))
        if running:
            return d
        if id(t) not in self.expected:
            fail("task %s has no expectation" % d["name"])
        _, kind, obj = self.expected[id(t)]
        derived = self._derive(loop, t, fut, [f for _, f in reversed(chain)])
        if kind is None or derived is None:
            if (kind, derived) != (None, None):
                fail("%s: expected %s, interpreter shows %s" % (d["name"], kind, derived))
            return d
        dkind, dobj, members, extra = derived
        if dkind != kind or (obj is not None and dobj is not obj):
            fail("%s: expected %s %r, interpreter shows %s %r" % (d["name"], kind, obj, dkind, dobj))
        d["waits"] = {"kind": kind, "id": hexid(dobj), "type": type(dobj).__name__,
                      "future": hexid(fut)}
        d["awaits"] = [hexid(dobj)]
        if kind != "task":
            r = resources.setdefault(hexid(dobj), {
                "id": hexid(dobj), "kind": kind, "type": type(dobj).__name__,
                "members": sorted(hexid(m) for m in members), "waiters": [],
                "deadline": None})
            r.update(extra)
        return d

    def _derive(self, loop, task, fut, frames):
        """(kind, object, members, extra) for what the future a task is
        suspended on stands for, from the interpreter's objects alone."""
        if fut is None:
            return None
        if is_task(fut):
            return "task", fut, [], {}
        if isinstance(fut, asyncio.tasks._GatheringFuture):
            return "gather", fut, list(fut._children), {}
        for cb in callbacks_of(fut):
            name = getattr(cb, "__name__", "")
            if name == "_outer_done_callback":
                return "shield", fut, [closure_var(cb, "inner")], {}
            if name == "_call_check_cancel":
                return "executor", fut, [], {}
        inner = frames[0] if frames else None
        if inner is not None and in_asyncio(inner):
            me = inner.f_locals.get("self")
            if isinstance(me, asyncio.TaskGroup) and me._on_completed_fut is fut:
                return "taskgroup", me, list(me._tasks), {}
            if isinstance(me, asyncio.StreamReader) and me._waiter is fut:
                return "io", me, [], {}
        # asyncio.wait: its helper _wait awaits a waiter future of its own,
        # the tasks in `fs` are its members, a timeout arms a timer on it.
        helper = next((f for f in frames if in_asyncio(f) and f.f_code.co_name == "_wait"), None)
        if helper is not None and helper.f_locals.get("waiter") is fut:
            extra = {"detail": helper.f_locals["return_when"]}
            for h in loop._scheduled:
                if not h._cancelled and h._args and h._args[0] is fut:
                    extra["deadline"] = h.when()
            return "wait", fut, [f for f in helper.f_locals["fs"] if is_task(f)], extra
        # The outermost primitive whose asyncio frames lead to the innermost
        # one (Barrier.wait -> ... -> Condition.wait: the barrier).
        prim = None
        for f in frames:
            if not in_asyncio(f):
                break
            me = f.f_locals.get("self")
            for kind, cls, has in PRIMITIVES:
                if isinstance(me, cls):
                    prim = (kind, me, has)
                    break
        if prim is not None:
            kind, me, has = prim
            if not has(me, fut):
                fail("%s: %r is not among the waiters of %r" % (task_name(task), fut, me))
            return kind, me, [], {}
        for h in loop._scheduled:
            if h._cancelled or not h._args or h._args[0] is not fut:
                continue
            name = getattr(h._callback, "__name__", "")
            if name == "_set_result_unless_cancelled":
                return "sleep", fut, [], {"deadline": h.when()}
            if name == "_release_waiter":  # wait_for, 3.11
                return "timeout", fut, [inner.f_locals["fut"]], {"deadline": h.when()}
        for key in loop._selector.get_map().values():
            for h in key.data:
                if h is not None and fut in (h._args or ()):
                    return "io", fut, [], {"detail": "fd %d" % key.fd}
        if type(fut) in (asyncio.Future, PY_FUTURE) or isinstance(fut, asyncio.Future):
            return "future", fut, [], {}
        return "other", fut, [], {}

    def _timeouts(self, loop):
        out = []
        for h in loop._scheduled:
            me = getattr(h._callback, "__self__", None)
            if not h._cancelled and isinstance(me, asyncio.Timeout):
                out.append({"id": hexid(me), "deadline": h.when(),
                            "task": hexid(me._task) if me._task else None})
        return sorted(out, key=lambda x: x["id"])

    # --- watcher side -------------------------------------------------------
    def _watch(self):
        deadline = time.monotonic() + SETTLE_TIMEOUT
        with self.cond:
            while len(self.records) < self.loops_expected:
                if not self.cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    fail("only %d of %d loops recorded" % (len(self.records), self.loops_expected))
        previous = None
        while True:
            tops = self._tops()
            if tops is not None and tops == previous:
                break
            previous = tops
            if time.monotonic() > deadline:
                fail("threads did not come to rest")
            time.sleep(STABLE_INTERVAL)
        frames = sys._current_frames()
        doc = self._final(frames)
        if self._tops() != previous:
            fail("a thread moved while the truth was recorded")
        with open(sys.argv[1], "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
        print("READY", flush=True); _BLOCK.acquire()  # noqa: E702

    def _tops(self):
        """(thread, code, lasti) of every thread but this one once each loop
        thread and each named thread is where it must stay; else None."""
        frames = sys._current_frames()
        me = threading.get_ident()
        names = {t.ident: t.name for t in threading.enumerate()}
        for loop, _, ident, blocked_in, _ in self.records:
            top = frames.get(ident)
            want = blocked_in is None and type(loop._selector).select.__code__
            if top is None or (top.f_code is not want if want else top.f_code.co_name != blocked_in):
                return None
        for ident, frame in frames.items():
            name = names.get(ident)
            if name in self.threads and frame.f_code.co_name != self.threads[name]:
                return None
        if not set(self.threads) <= {names.get(i) for i in frames}:
            return None
        return sorted((i, id(f.f_code), f.f_lasti) for i, f in frames.items() if i != me)

    def _final(self, frames):
        by_ident = {t.ident: t for t in threading.enumerate()}
        doc = {"python": "%d.%d.%d" % sys.version_info[:3], "pid": os.getpid(),
               "debug": hasattr(sys, "gettotalrefcount"), "threads": [], "loops": [],
               "tasks": [], "hidden_tasks": [], "done_tasks": [], "resources": [],
               "timeouts": [], "skipped": self.skipped}
        for ident, frame in frames.items():
            thread = by_ident.get(ident)
            if thread is not None and thread.name == WATCHER:
                continue
            doc["threads"].append({"native_id": thread.native_id if thread else None,
                                   "name": thread.name if thread else None,
                                   "stack": snarl_sample._stack(frame)})
        for loop, snap, ident, blocked_in, running in self.records:
            again = self._snapshot(loop, running)
            if again != snap:
                fail("loop %s changed after it was recorded:\n%s\n%s"
                     % (hexid(loop), json.dumps(snap), json.dumps(again)))
            native = by_ident[ident].native_id
            snap["loop"]["thread"] = native
            doc["loops"].append(snap["loop"])
            for d in snap["tasks"] + snap["hidden_tasks"]:
                d["running_in_thread"] = native if d["running"] else None
                if d["running"]:
                    d["stack"] = self._running_stack(frames[ident], running)
            doc["tasks"] += snap["tasks"]
            doc["hidden_tasks"] += snap["hidden_tasks"]
            doc["resources"] += snap["resources"]
            doc["timeouts"] += snap["timeouts"]
        for t in self.done:
            doc["done_tasks"].append({"id": hexid(t), "name": t.get_name(),
                                      "state": "cancelled" if t.cancelled() else "done"})
        return doc

    @staticmethod
    def _running_stack(top, task):
        """The loop thread's frames from the innermost down to the running
        task's coroutine frame."""
        target, out = task.get_coro().cr_frame, []
        frame = top
        while frame is not None:
            out.append(frame_dict(frame))
            if frame is target:
                return out
            frame = frame.f_back
        fail("the running task's frame is not on its thread's stack")
