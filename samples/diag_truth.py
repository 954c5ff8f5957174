"""Shared by the diagnosis samples (samples/diag_*.py): aio_truth's ground
truth of every task, plus the diagnoses `snarl check` must report, checked
against the interpreter's own objects before READY.

A sample declares what it expects with DiagTruth.expect_diagnosis(kind,
tasks, resources) and DiagTruth.expect_all_asleep(); the truth JSON
(argv[1]) then also holds:

- "diagnoses": [{"kind", "tasks": [ids], "resources": [ids],
  "loops": [ids or null a diagnosis's "loop" may be]}], sorted ids; for
  all-asleep the tasks are every pending task of the loop at rest.
- "exit": 1 when a diagnosis is expected, else 0.
- "holders": {lock or semaphore id: [task ids]}: recorded by each holding
  task itself just inside its `async with` (DiagTruth.held), and checked
  at the end (the primitive is still locked).
- "unlocked": ids of the Locks and Conditions (and each Condition's own
  Lock) the tasks' coroutines refer to that are not locked at rest: a task
  inside `async with cond:` waiting in cond.wait() does not hold it.
- "resolvers": {resource id: [task ids]} for every event, condition,
  queue, barrier and bare future a task waits on: the pending tasks whose
  coroutine chain references it (through its frames' locals and value
  stack, a bound method, or the future the task is suspended on) and that
  do not wait on it themselves. Found with gc.get_referrers(); "external"
  lists the referrers that belong to no task (a timer handle, a thread's
  frame, a global...): someone else may resolve it. Its sys.getrefcount()
  must be explained by those referrers, so no reference hides from the
  analysis (e.g. in a C structure).
- "loop_health": per recorded loop, what could still wake it: ready
  callbacks, live timers, watched descriptors besides its self-pipe, the
  default executor, other Python threads; "idle" when its thread sits in
  the selector (as opposed to blocked in a task or a callback).
- "watcher": the native id of the thread that recorded the truth, which
  ends right after printing READY (unless keep_watcher): wait until
  /proc/PID/task/ID is gone before reading the process, so the sample's
  own machinery is not one more Python thread that could call into a loop.

The semantics the expectations follow (docs/design.md §5, docs/json.md):
- Wait-for graph: a task points at the task it awaits directly or the
  resource it waits on; a gather, shield, TaskGroup, asyncio.wait (or
  3.11 wait_for) points at its members; a Lock or Semaphore at its
  holders; an Event, Condition, Queue, Barrier or bare future at its
  resolvers.
- A cycle is reported when its strongly connected component is closed:
  every holder of its semaphores, every resolver of its events,
  conditions, queues and futures, and every still pending member of a
  combinator that one member's end can wake (a gather: an error ends it; a
  TaskGroup: an error cancels its tasks; an asyncio.wait but for
  ALL_COMPLETED) is a task of the component, and none of them has an
  external reference; a sleep, I/O, executor, unknown wait or asyncio.wait
  with a timeout never closes. A closed component of locks and semaphores only is a
  lock-cycle, or a lock-reacquire when it has one task (also for a
  Semaphore whose every slot the waiter holds itself); of tasks and
  combinators only, an await-cycle; with an event, condition, queue,
  barrier or future, a wake-cycle (mixed shapes are not used).
- all-asleep: the loop's thread sits in the loop's selector and the loop
  has no ready callback, no live timer, no watched descriptor besides its
  self-pipe, no default executor and no other Python thread: reported
  together with any cycle (tasks: every pending task of the loop).
- loop-blocked, loop-self-wait and nested-loop are declared by the sample
  and name exactly the running task (none when a callback blocks); a loop
  thread blocked for one of the last two reasons is not also loop-blocked
  (the more specific diagnosis explains the same block).

What a task waits on is derived as aio_truth does, but a frame's `self` is
read from its coroutine's referents, never through frame.f_locals: on 3.11
and 3.12 f_locals caches a dict of the frame's locals on the frame object,
one more reference to every resource, which snarl would rightly count as
someone else who could wake it.

The sample fails (SAMPLE ERROR, exit 3) rather than record a truth its own
objects contradict: each declared cycle must be a closed component of the
graph built from the interpreter's objects, every closed component must be
declared, and all-asleep must be declared exactly when the loop is asleep.
"""
import asyncio
import gc
import json
import sys
import threading
import time
import types
import weakref

import aio_truth
from aio_truth import fail, hexid

CYCLE_KINDS = ("await-cycle", "lock-cycle", "lock-reacquire", "wake-cycle")
LOCK_KINDS = ("lock", "semaphore")
WAKE_KINDS = ("event", "condition", "queue", "barrier", "future")
COMBINATOR_KINDS = ("gather", "shield", "taskgroup", "timeout", "wait")
# How many hops of anonymous intermediate objects (bound methods, cells,
# FutureIter...) a reference may take from a task's coroutine chain to a
# resource and still count as the task's.
ATTRIBUTION_DEPTH = 4
INTERMEDIATE_TYPES = (types.MethodType, types.CellType, tuple, list, dict)


def _wref(obj):
    try:
        return hexid(obj), weakref.ref(obj)
    except TypeError:
        fail("%r cannot be weakly referenced: the truth would keep it alive" % (obj,))


def _count_references(obj):
    """References to obj held by the objects gc knows as its referrers."""
    counted = 0
    for ref in gc.get_referrers(obj):
        for x in gc.get_referents(ref):
            if x is obj:
                counted += 1
    return counted


def _self_of(owners, frame, classes):
    """The one object of one of classes that the frame's coroutine or
    generator refers to (its `self`), or None."""
    owner = owners.get(id(frame))
    if owner is None:
        return None
    found = {id(r): r for r in gc.get_referents(owner) if isinstance(r, classes)}
    if len(found) > 1:
        fail("%s refers to several of %s" % (frame.f_code.co_qualname, classes))
    return next(iter(found.values()), None)


def _alive(pair):
    ident, ref = pair
    obj = ref()
    if obj is None or hexid(obj) != ident:
        fail("object %s died before the truth was recorded" % ident)
    return obj


class DiagTruth(aio_truth.Truth):
    """aio_truth.Truth plus expected diagnoses. Nothing here holds a strong
    reference to a resource: expectations keep ids and weak references, so
    the sample's bookkeeping never looks like someone who could wake it."""

    def __init__(self, loops=1, threads=None, keep_watcher=False):
        self.keep_watcher = keep_watcher
        self.declared = []    # (kind, [task pairs], [resource pairs], loops or None, asleep loop)
        self.holds = []       # (resource pair, task id)
        self.notes = {}
        self.watcher_native_id = None
        self.run_forever_frames = None
        super().__init__(loops, threads)

    # --- what the sample declares -------------------------------------
    def expect_diagnosis(self, kind, tasks=(), resources=(), loops=None):
        """loops: the loop objects the diagnosis's "loop" may name (None
        may be among them); by default the running loop, and also null for
        a cycle."""
        if loops is None:
            loop = asyncio.get_running_loop()
            loops = [loop, None] if kind in CYCLE_KINDS else [loop]
        self.declared.append((kind, [_wref(t) for t in tasks], [_wref(r) for r in resources],
                              [None if lp is None else hexid(lp) for lp in loops], None))

    def expect_all_asleep(self, loop=None):
        loop = loop or asyncio.get_running_loop()
        self.declared.append(("all-asleep", [], [], [hexid(loop)], hexid(loop)))

    def held(self, prim):
        """Call from inside `async with prim`: the current task holds it."""
        task = aio_truth.current_task(asyncio.get_running_loop())
        self.holds.append((_wref(prim), hexid(task)))

    def note(self, key, value):
        self.notes[key] = value

    def expect_run_forever_frames(self, count):
        """The loop thread's recorded stack must hold this many
        BaseEventLoop.run_forever frames (a loop run inside a loop run)."""
        self.run_forever_frames = count

    # --- blocking a loop from a callback --------------------------------
    def record_in_callback(self, blocked_in, block, loop=None):
        """Like record_when_idle, but once settled the recording callback
        calls block() (which must go straight into the function named
        blocked_in and never return): the loop thread is blocked inside a
        callback, with no task running."""
        loop = loop or asyncio.get_running_loop()
        deadline = time.monotonic() + aio_truth.SETTLE_TIMEOUT
        loop.call_soon(self._poll_then_block, loop, None, deadline, blocked_in, block)

    def _poll_then_block(self, loop, previous, deadline, blocked_in, block):
        snap = self._snapshot(loop, None) if self._settled(loop, None) else None
        if snap is not None and snap == previous:
            self._store(loop, snap, blocked_in, None)
            block()
            fail("block() returned")
        if time.monotonic() > deadline:
            fail("loop %s did not settle: %s" % (hexid(loop), self._why_not(loop, None)))
        loop.call_later(aio_truth.STABLE_INTERVAL, self._poll_then_block, loop, snap, deadline,
                        blocked_in, block)

    # --- watcher side -------------------------------------------------------
    def _watch(self):
        """aio_truth.Truth._watch, except that the thread ends after READY
        (unless keep_watcher)."""
        self.watcher_native_id = threading.get_native_id()
        deadline = time.monotonic() + aio_truth.SETTLE_TIMEOUT
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
            time.sleep(aio_truth.STABLE_INTERVAL)
        frames = sys._current_frames()
        doc = self._final(frames)
        del frames
        self._forget_objects()
        if self._tops() != previous:
            fail("a thread moved while the truth was recorded")
        with open(sys.argv[1], "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
        print("READY", flush=True)
        if self.keep_watcher:
            aio_truth._BLOCK.acquire()

    def _forget_objects(self):
        """Drops the weak references the expectations kept: live code (this
        module's globals) holding a weak reference to a primitive could
        still wake it, which would change the very verdict under test."""
        self.declared = [(kind, [(p[0], None) for p in tasks], [(p[0], None) for p in res],
                          loops, asleep) for kind, tasks, res, loops, asleep in self.declared]
        self.holds = [((pair[0], None), task) for pair, task in self.holds]

    def _final(self, frames):
        doc = super()._final(frames)
        doc["watcher"] = {"native_id": self.watcher_native_id, "exits": not self.keep_watcher}
        doc["notes"] = self.notes
        graph = self._graph(doc)
        doc["holders"] = {r: sorted(ts) for r, ts in graph["holders"].items()}
        doc["resolvers"] = {r: sorted(ts) for r, ts in graph["resolvers"].items()}
        doc["external"] = {r: sorted(x) for r, x in graph["external"].items()}
        doc["unlocked"] = self._unlocked()
        doc["loop_health"] = self._health(frames)
        doc["diagnoses"] = self._diagnoses(doc)
        self._check(doc, graph)
        if self.run_forever_frames is not None:
            self._check_run_forever(doc)
        doc["exit"] = 1 if doc["diagnoses"] else 0
        return doc

    # --- what a task waits on, without touching f_locals -------------------
    def _derive(self, loop, task, fut, frames):
        """aio_truth.Truth._derive, reading a frame's `self` from its
        coroutine's referents instead of frame.f_locals: on 3.11 and 3.12
        f_locals caches a dict of the locals on the frame object, one more
        reference to every resource that no task's frame would hold."""
        if fut is None:
            return None
        if aio_truth.is_task(fut):
            return "task", fut, [], {}
        if isinstance(fut, asyncio.tasks._GatheringFuture):
            return "gather", fut, list(fut._children), {}
        for cb in aio_truth.callbacks_of(fut):
            name = getattr(cb, "__name__", "")
            if name == "_outer_done_callback":
                return "shield", fut, [aio_truth.closure_var(cb, "inner")], {}
            if name == "_call_check_cancel":
                return "executor", fut, [], {}
        owners = {id(f): obj for obj, f in aio_truth.walk(task.get_coro())[0]}
        inner = frames[0] if frames else None
        if inner is not None and aio_truth.in_asyncio(inner):
            me = _self_of(owners, inner, (asyncio.TaskGroup, asyncio.StreamReader))
            if isinstance(me, asyncio.TaskGroup) and me._on_completed_fut is fut:
                return "taskgroup", me, list(me._tasks), {}
            if isinstance(me, asyncio.StreamReader) and me._waiter is fut:
                return "io", me, [], {}
        if any(aio_truth.in_asyncio(f) and f.f_code.co_name == "_wait" for f in frames):
            waited = self._wait_of(loop, fut)
            if waited is not None:
                return waited
        prim = None
        classes = tuple(cls for _, cls, _ in aio_truth.PRIMITIVES)
        for f in frames:
            if not aio_truth.in_asyncio(f):
                break
            me = _self_of(owners, f, classes)
            for kind, cls, has in aio_truth.PRIMITIVES:
                if isinstance(me, cls):
                    prim = (kind, me, has)
                    break
        if prim is not None:
            kind, me, has = prim
            if not has(me, fut):
                fail("%s: %r is not among the waiters of %r" % (aio_truth.task_name(task), fut, me))
            return kind, me, [], {}
        for h in loop._scheduled:
            if h._cancelled or not h._args or h._args[0] is not fut:
                continue
            if getattr(h._callback, "__name__", "") == "_set_result_unless_cancelled":
                return "sleep", fut, [], {"deadline": h.when()}
            if getattr(h._callback, "__name__", "") == "_release_waiter":
                fail("3.11 wait_for: not used by the diagnosis samples")
        for key in loop._selector.get_map().values():
            for h in key.data:
                if h is not None and fut in (h._args or ()):
                    return "io", fut, [], {"detail": "fd %d" % key.fd}
        if isinstance(fut, (asyncio.Future, aio_truth.PY_FUTURE)):
            return "future", fut, [], {}
        return "other", fut, [], {}

    def _wait_of(self, loop, fut):
        """asyncio.wait's waiter future fut: the pending tasks whose done
        callbacks include the _on_completion closing over it (its members),
        and from that closure its return_when and whether a timeout's
        timer may release it."""
        members, mode, timed = [], None, True
        for t in self._tasks(loop):
            for cb in aio_truth.callbacks_of(t):
                if getattr(cb, "__name__", "") == "_on_completion" and \
                        aio_truth.closure_var(cb, "waiter") is fut:
                    members.append(t)
                    mode = aio_truth.closure_var(cb, "return_when")
                    timed = aio_truth.closure_var(cb, "timeout_handle") is not None
        if not members:
            return None
        return "wait", fut, members, {"detail": mode, "timed": timed}

    # --- the graph from the interpreter's objects ----------------------------
    def _regions(self):
        """{id(object): task id} for every task, its coroutine chain and the
        object its innermost frame awaits."""
        regions = {}
        for loop, _, _, _, _ in self.records:
            for t in self._tasks(loop):
                regions[id(t)] = hexid(t)
                chain, terminal = aio_truth.walk(t.get_coro())
                for obj, _ in chain:
                    regions[id(obj)] = hexid(t)
                if terminal is not None:
                    regions[id(terminal)] = hexid(t)
        return regions

    def _owners(self, obj, regions, depth, seen, tasks, external):
        refs = gc.get_referrers(obj)
        seen.add(id(refs))  # this very list refers to the intermediates
        for ref in refs:
            if id(ref) in seen:
                continue
            seen.add(id(ref))
            if id(ref) in regions:
                tasks.add(regions[id(ref)])
            elif isinstance(ref, types.FrameType):
                # A frame object of a running function (sys._current_frames
                # made it) does not hold its locals for the collector.
                continue
            elif depth < ATTRIBUTION_DEPTH and (isinstance(ref, INTERMEDIATE_TYPES) or
                                                type(ref).__name__ == "FutureIter"):
                self._owners(ref, regions, depth + 1, seen, tasks, external)
            else:
                external.append(type(ref).__name__)

    def _references(self, ref, regions):
        """(tasks referencing the object, external referrer types,
        unexplained references): every reference to it must come from a
        referrer gc knows (sys.getrefcount minus this function's own local,
        measured on a probe). The caller holds only the weak reference ref."""
        obj = ref()
        tasks, external = set(), []
        self._owners(obj, regions, 0, set(), tasks, external)
        counted = _count_references(obj)
        probe = object()
        own = sys.getrefcount(probe)  # this frame's local plus the call's own
        unexplained = sys.getrefcount(obj) - own - counted
        return tasks, external, unexplained

    def _graph(self, doc):
        """Edges of the wait-for graph from the interpreter's objects."""
        regions = self._regions()
        edges, kinds = {}, {}
        holders, resolvers, external, closed = {}, {}, {}, {}
        waiters, any_member = {}, {}
        for loop, _, _, _, running in self.records:
            for t in self._tasks(loop):
                tid = hexid(t)
                kinds[tid] = "task"
                edges.setdefault(tid, set())
                if t is running or t._fut_waiter is None:
                    continue
                chain, _ = aio_truth.walk(t.get_coro())
                kind, obj, members, extra = self._derive(loop, t, t._fut_waiter,
                                                         [f for _, f in reversed(chain)])
                rid = hexid(obj)
                edges[tid].add(rid)
                waiters.setdefault(rid, set()).add(tid)
                if kind == "task":
                    continue
                kinds[rid] = kind
                edges.setdefault(rid, set())
                if kind == "wait":
                    # A timeout's timer releases it; FIRST_COMPLETED and
                    # FIRST_EXCEPTION wake it when any one member ends,
                    # so every member must be on the ring (_cycles).
                    edges[rid] |= {hexid(m) for m in members}
                    closed[rid] = not extra["timed"]
                    any_member[rid] = extra["detail"] != "ALL_COMPLETED"
                elif kind in COMBINATOR_KINDS:
                    edges[rid] |= {hexid(m) for m in members}
                    closed[rid] = True
                    # A gather ends on a member's error, a TaskGroup
                    # cancels everything on one: every member still
                    # pending must be on the ring.
                    any_member[rid] = kind in ("gather", "taskgroup")
                elif kind in LOCK_KINDS:
                    hs = {task for (pair, task) in self.holds if pair[0] == rid}
                    if hs and not obj.locked():
                        fail("%s %s declared held but not locked" % (kind, rid))
                    holders[rid] = hs
                    edges[rid] |= hs
                    closed[rid] = bool(hs)
                elif kind in WAKE_KINDS:
                    ref = weakref.ref(obj)
                    del obj
                    refs, ext, unexplained = self._references(ref, regions)
                    if unexplained:
                        ext.append("%d references gc cannot see" % unexplained)
                    resolvers[rid] = refs
                    external[rid] = ext
                    closed[rid] = not ext
                else:  # sleep, io, executor, other: woken from outside
                    closed[rid] = False
        for rid in resolvers:
            resolvers[rid] -= waiters.get(rid, set())
            edges[rid] |= resolvers[rid]
        return {"edges": edges, "kinds": kinds, "holders": holders, "resolvers": resolvers,
                "external": external, "closed": closed, "any_member": any_member}

    @staticmethod
    def _sccs(edges):
        """Strongly connected components (Tarjan, iterative)."""
        index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
        for root in sorted(edges):
            if root in index:
                continue
            work = [(root, iter(sorted(edges.get(root, ()))))]
            index[root] = low[root] = counter[0]
            counter[0] += 1
            stack.append(root)
            on.add(root)
            while work:
                node, it = work[-1]
                advanced = False
                for nxt in it:
                    if nxt not in index:
                        index[nxt] = low[nxt] = counter[0]
                        counter[0] += 1
                        stack.append(nxt)
                        on.add(nxt)
                        work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                        advanced = True
                        break
                    if nxt in on:
                        low[node] = min(low[node], index[nxt])
                if advanced:
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.add(x)
                        if x == node:
                            break
                    out.append(comp)
        return out

    def _cycles(self, graph):
        """[(kind, task ids, resource ids)] of every closed cycle."""
        edges, kinds, closed = graph["edges"], graph["kinds"], graph["closed"]
        found = []
        for comp in self._sccs(edges):
            if len(comp) == 1:
                (x,) = comp
                if x not in edges.get(x, ()):
                    continue
            tasks = {x for x in comp if kinds.get(x) == "task"}
            res = comp - tasks
            # Closed: nothing outside the component can resolve it.
            if not all(closed.get(r, False) for r in res):
                continue
            if any(not edges[r] <= comp for r in res
                   if kinds[r] in WAKE_KINDS or kinds[r] == "semaphore"):
                continue
            if any(not {m for m in edges[r] if kinds.get(m) == "task"} <= comp
                   for r in res if graph["any_member"].get(r)):
                continue
            rkinds = {kinds[r] for r in res}
            if rkinds and rkinds <= set(LOCK_KINDS):
                kind = "lock-reacquire" if len(tasks) == 1 else "lock-cycle"
            elif rkinds <= set(COMBINATOR_KINDS):
                kind = "await-cycle"
            elif rkinds <= set(WAKE_KINDS):
                kind = "wake-cycle"
            else:
                fail("a cycle mixing %s: the samples do not use such shapes" % sorted(rkinds))
            # Combinators on an await ring are the ones among its nodes.
            found.append((kind, sorted(tasks), sorted(res)))
        return sorted(found)

    def _unlocked(self):
        """Ids of the asyncio Locks and Conditions (and a Condition's own
        lock) that the pending tasks' coroutine chains refer to and that
        nobody holds right now: no task may be named as their holder."""
        out = set()
        for loop, _, _, _, _ in self.records:
            for t in self._tasks(loop):
                for obj, _ in aio_truth.walk(t.get_coro())[0]:
                    for r in gc.get_referents(obj):
                        prims = [r]
                        if isinstance(r, asyncio.Condition):
                            prims.append(r._lock)
                        for p in prims:
                            if isinstance(p, (asyncio.Lock, asyncio.Condition)) and not p.locked():
                                out.add(hexid(p))
        return sorted(out)

    def _health(self, frames):
        out = {}
        loop_threads = {ident for _, _, ident, _, _ in self.records}
        watcher = threading.get_ident()
        others = sorted(i for i in frames if i not in loop_threads and i != watcher)
        for loop, _, ident, blocked_in, _ in self.records:
            ssock = getattr(loop, "_ssock", None)
            selfpipe = ssock.fileno() if ssock is not None else None
            fds = sorted(k.fd for k in loop._selector.get_map().values() if k.fd != selfpipe)
            h = {
                "idle": blocked_in is None,
                "ready": len([x for x in loop._ready if not x._cancelled]),
                "timers": len([x for x in loop._scheduled if not x._cancelled]),
                "fds": fds,
                "default_executor": loop._default_executor is not None,
                "other_threads": len(others),
            }
            h["asleep"] = h["idle"] and not (h["ready"] or h["timers"] or h["fds"] or
                                             h["default_executor"] or h["other_threads"])
            out[hexid(loop)] = h
        return out

    def _diagnoses(self, doc):
        out = []
        pending = {}
        for t in doc["tasks"] + doc["hidden_tasks"]:
            pending.setdefault(t["loop"], []).append(t["id"])
        for kind, tasks, res, loops, asleep in self.declared:
            for p in tasks + res:
                _alive(p)
            d = {"kind": kind, "tasks": sorted(p[0] for p in tasks),
                 "resources": sorted(p[0] for p in res), "loops": loops}
            if asleep is not None:
                d["tasks"] = sorted(pending.get(asleep, []))
            out.append(d)
        return sorted(out, key=lambda d: (d["kind"], d["tasks"], d["resources"]))

    def _check_run_forever(self, doc):
        loop_threads = {lp["thread"] for lp in doc["loops"]}
        for t in doc["threads"]:
            if t["native_id"] in loop_threads:
                runs = [f for f in t["stack"] if f["function"] == "BaseEventLoop.run_forever"]
                if len(runs) != self.run_forever_frames:
                    fail("thread %s has %d BaseEventLoop.run_forever frames, expected %d" %
                         (t["name"], len(runs), self.run_forever_frames))
        doc["run_forever_frames"] = self.run_forever_frames

    def _check(self, doc, graph):
        """The declared diagnoses against the interpreter's objects."""
        ids = {t["id"] for t in doc["tasks"] + doc["hidden_tasks"]}
        for d in doc["diagnoses"]:
            if not set(d["tasks"]) <= ids:
                fail("%s names tasks that are not pending: %s" % (d["kind"], d["tasks"]))
        declared = sorted((d["kind"], d["tasks"], d["resources"]) for d in doc["diagnoses"]
                          if d["kind"] in CYCLE_KINDS)
        derived = self._cycles(graph)
        if declared != derived:
            fail("declared cycles %s, the interpreter's objects make %s" % (declared, derived))
        for d in doc["diagnoses"]:
            if d["kind"] != "stuck":
                continue
            # What a stuck task waits on: something only tasks gc attributes
            # to the stuck group (or none) reference, nothing outside them.
            for rid in d["resources"]:
                if rid not in graph["resolvers"] or graph["external"].get(rid):
                    fail("stuck on %s, but it is not a wait only tasks can resolve (%s)" %
                         (rid, graph["external"].get(rid)))
                if not graph["resolvers"][rid] <= set(d["tasks"]):
                    fail("stuck on %s, but tasks %s outside the group reference it" %
                         (rid, sorted(graph["resolvers"][rid] - set(d["tasks"]))))
        running = sorted(lp["running_task"] for lp in doc["loops"] if lp["running_task"])
        for d in doc["diagnoses"]:
            if d["kind"] in ("loop-blocked", "loop-self-wait", "nested-loop") and \
                    d["tasks"] != running:
                fail("%s names %s, but the running tasks are %s" % (d["kind"], d["tasks"], running))
        for lid, h in doc["loop_health"].items():
            want = any(d["kind"] == "all-asleep" and d["loops"] == [lid] for d in doc["diagnoses"])
            if want != h["asleep"]:
                fail("loop %s: all-asleep %s declared, but its health is %s" %
                     (lid, "is" if want else "is not", h))
