"""Pending tasks that only weak references or cycles keep alive, beside
pending tasks something strongly holds. One event loop, idle in its
selector once settled. For tests/e2e/test_reach.py.

Automatic collection is off (gc.disable() before anything is made), so the
tasks the collector would destroy are still pending when snarl looks.

weak (the collector destroys them: "Task was destroyed but it is pending!")
  orphan               create_task(...) whose result is dropped, awaiting a
                       future only its own frame references (issue 91887)
  shield-inner         the inner task of a shield() that wait_for timed out
  gather-sibling       left running when gather() failed fast
  chain-parent         a dropped task awaiting chain-child, which awaits a
  chain-child          private future: the pair is one garbage cycle
  weakref-only         referenced by a weakref.ref only
  py-orphan            a pure-Python task (asyncio.tasks._PyTask), dropped
  group-orphan-parent  a dropped task inside `async with TaskGroup()`, and
  group-orphan-child   the group's child
  attr-cycle           held by an attribute of an object that only refers
                       to itself (instance dict or inline values)
  slots-cycle          the same through a __slots__ class
strong (the collector leaves them)
  main                 the asyncio.run task
  kept                 in a module-level list
  kept-parent          in that list, awaiting kept-child
  kept-child
  sleeper              dropped, but asyncio.sleep's timer holds it
  event-waiter         dropped, awaiting a module-level Event
  group-parent         in the list, with its TaskGroup child group-child
  group-child
  closure-held         held by a closure of a module-level function
  attr-held            an attribute of a module-level object
  slots-held           a __slots__ member of a module-level object
  shield-caller        in the list (they made shield-inner and
  gather-caller        gather-sibling), now waiting on an Event

The truth is the collector's own verdict on this very heap: once the loop
is settled, a loop callback records every pending task (id, name, the
verdict declared above) and what gc.get_referents() says of the objects
around the tasks, then forks. The child, a copy of the heap at the same
addresses, runs gc.collect() and reports which pending tasks it destroyed
(their weak references cleared) and which of them logged "Task was
destroyed but it is pending!". The parent never collects: it writes the
truth to argv[1], prints READY and idles. A verdict that differs from the
declared one fails the sample (exit 3) rather than record a surprise.
Run: python3 reach_tasks.py TRUTH.json
"""
import gc

gc.disable()

import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import weakref  # noqa: E402

# How long the loop may take to settle, and how far apart two polls that
# must agree are (the shield timeout below is far shorter).
SETTLE_TIMEOUT = 60.0
STABLE_INTERVAL = 0.05
SHIELD_TIMEOUT = 0.01
# Objects around the tasks whose referents are recorded for the traverse
# check: enough to meet every kind of object the tasks touch.
REFERENTS_MAX = 4000

WEAK = ("orphan", "shield-inner", "gather-sibling", "chain-parent", "chain-child",
        "weakref-only", "py-orphan", "group-orphan-parent", "group-orphan-child",
        "attr-cycle", "slots-cycle")
STRONG = ("main", "kept", "kept-parent", "kept-child", "sleeper", "event-waiter",
          "group-parent", "group-child", "closure-held", "attr-held", "slots-held",
          "shield-caller", "gather-caller")

KEEP = []
WEAKREFS = []
ARRIVED = set()   # callers that reached their final wait
EVENT = None
STAY = None
HOLDER = None
ATTR = None
SLOTTED = None


class Holder:
    pass


class Slotted:
    __slots__ = ("task", "me")


def fail(msg):
    print("SAMPLE ERROR: %s" % msg, file=sys.stderr, flush=True)
    os._exit(3)


def spawn(name):
    return asyncio.get_running_loop().create_task(private_wait(), name=name)


def make_holder(task):
    return lambda: task


async def private_wait():
    await asyncio.get_running_loop().create_future()


async def chain_parent():
    await spawn("chain-child")


async def kept_parent():
    await spawn("kept-child")


async def sleeper():
    await asyncio.sleep(3600)


async def group(child):
    async with asyncio.TaskGroup() as tg:
        tg.create_task(private_wait(), name=child)


async def fail_soon():
    await asyncio.sleep(0)
    raise ValueError("fail fast")


async def shield_caller():
    try:
        await asyncio.wait_for(asyncio.shield(spawn("shield-inner")), SHIELD_TIMEOUT)
    except (asyncio.TimeoutError, TimeoutError):
        pass
    ARRIVED.add("shield-caller")
    await STAY.wait()


async def gather_caller():
    try:
        await asyncio.gather(spawn("gather-sibling"), fail_soon())
    except ValueError:
        pass
    ARRIVED.add("gather-caller")
    await STAY.wait()


def pending_tasks(loop):
    """Every pending task of loop, C and pure-Python ones (from 3.14 the C
    all_tasks() does not see the latter)."""
    found = set(asyncio.all_tasks(loop))
    for name in ("_scheduled_tasks", "_all_tasks"):
        registry = getattr(asyncio.tasks, name, None) or ()
        found |= {t for t in list(registry) if t.get_loop() is loop and not t.done()}
    return sorted(found, key=id)


def snapshot(loop):
    """What must hold still: each pending task and its future, or None
    while something is still on its way."""
    if [h for h in loop._ready if not h._cancelled] or ARRIVED != {"shield-caller",
                                                                  "gather-caller"}:
        return None
    out = []
    for t in pending_tasks(loop):
        waiter = t._fut_waiter
        if waiter is None and t is not asyncio.current_task(loop):
            return None
        out.append((id(t), t.get_name(), id(waiter)))
    return out


def referents_around(tasks):
    """gc.get_referents() of the tasks and what they lead to, breadth first
    (ids only: nothing here may outlive the call)."""
    out, queue, seen = {}, list(tasks), set()
    while queue and len(out) < REFERENTS_MAX:
        obj = queue.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        refs = gc.get_referents(obj)
        out[hex(id(obj))] = {"type": type(obj).__name__,
                             "refs": [hex(id(r)) for r in refs]}
        queue.extend(r for r in refs if gc.is_tracked(r))
    return out


def collect_in_child(loop, ids):
    """Runs in the forked copy: the collector's verdict on the tasks whose
    ids are given. They are found on the GC lists: from 3.14 a forked child
    no longer lists the parent's tasks in asyncio.all_tasks()."""
    logged = []

    def handler(_, context):
        task = context.get("task")
        if task is not None and "destroyed but it is pending" in context.get("message", ""):
            logged.append(hex(id(task)))

    loop.set_exception_handler(handler)
    objects = gc.get_objects()
    refs = {hex(id(o)): weakref.ref(o) for o in objects if hex(id(o)) in ids}
    del objects
    if len(refs) != len(ids):
        fail("the collecting child found %d of %d tasks" % (len(refs), len(ids)))
    gc.collect()
    return {"destroyed": sorted(k for k, r in refs.items() if r() is None),
            "logged": sorted(set(logged))}


def verdict_by_fork(loop, ids):
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rd)
            os.write(wr, json.dumps(collect_in_child(loop, ids)).encode())
        finally:
            os._exit(0)
    os.close(wr)
    chunks = []
    while True:
        chunk = os.read(rd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(rd)
    os.waitpid(pid, 0)
    if not chunks:
        fail("the collecting child reported nothing")
    return json.loads(b"".join(chunks))


def record(loop):
    tasks = pending_tasks(loop)
    declared = {name: "weak" for name in WEAK}
    declared.update({name: "strong" for name in STRONG})
    rows = [{"id": hex(id(t)), "name": t.get_name(), "expect": declared.get(t.get_name())}
            for t in tasks]
    referents = referents_around(tasks)
    del tasks
    names = {r["name"] for r in rows}
    if names != set(declared) or len(rows) != len(declared):
        fail("pending tasks %s, declared %s" % (sorted(names), sorted(declared)))
    verdict = verdict_by_fork(loop, {r["id"] for r in rows})
    destroyed = set(verdict["destroyed"])
    for r in rows:
        got = "weak" if r["id"] in destroyed else "strong"
        if got != r["expect"]:
            fail("%s: declared %s, the collector says %s" % (r["name"], r["expect"], got))
    if set(verdict["logged"]) != destroyed:
        fail("destroyed %s but logged %s" % (sorted(destroyed), verdict["logged"]))
    truth = {"python": "%d.%d.%d" % sys.version_info[:3], "pid": os.getpid(),
             "tasks": rows, "destroyed": verdict["destroyed"], "logged": verdict["logged"],
             "referents": referents}
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(truth, f)
    print("READY", flush=True)


def poll(loop, previous, deadline):
    snap = snapshot(loop)
    if snap is not None and snap == previous:
        loop.call_soon(record, loop)
        return
    if time.monotonic() > deadline:
        fail("the loop did not settle")
    loop.call_later(STABLE_INTERVAL, poll, loop, snap, deadline)


async def main():
    global EVENT, STAY, HOLDER, ATTR, SLOTTED
    loop = asyncio.get_running_loop()
    asyncio.current_task().set_name("main")
    EVENT, STAY = asyncio.Event(), asyncio.Event()
    asyncio.create_task(private_wait(), name="orphan")
    asyncio.create_task(chain_parent(), name="chain-parent")
    WEAKREFS.append(weakref.ref(spawn("weakref-only")))
    asyncio.tasks._PyTask(private_wait(), loop=loop, name="py-orphan")
    asyncio.create_task(group("group-orphan-child"), name="group-orphan-parent")
    cycle = Holder()
    cycle.me, cycle.task = cycle, spawn("attr-cycle")
    slots = Slotted()
    slots.me, slots.task = slots, spawn("slots-cycle")
    del cycle, slots
    KEEP.append(spawn("kept"))
    KEEP.append(asyncio.create_task(kept_parent(), name="kept-parent"))
    asyncio.create_task(sleeper(), name="sleeper")
    asyncio.create_task(EVENT.wait(), name="event-waiter")
    KEEP.append(asyncio.create_task(group("group-child"), name="group-parent"))
    HOLDER = make_holder(spawn("closure-held"))
    ATTR = Holder()
    ATTR.task = spawn("attr-held")
    SLOTTED = Slotted()
    SLOTTED.task = spawn("slots-held")
    KEEP.append(asyncio.create_task(shield_caller(), name="shield-caller"))
    KEEP.append(asyncio.create_task(gather_caller(), name="gather-caller"))
    loop.call_soon(poll, loop, None, time.monotonic() + SETTLE_TIMEOUT)
    await loop.create_future()


if __name__ == "__main__":
    asyncio.run(main())
