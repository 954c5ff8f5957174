"""Shared by the thread samples (samples/threads_*.py): the ground truth of
which thread holds which threading lock, which thread waits where, which
work item an executor worker runs, and the diagnoses `snarl check` must
report, recorded from the interpreter itself before READY.

A holder calls ThreadTruth.held(lock) just inside its `with`; a sample
declares waits with expect_wait(thread, function, resource) and
diagnoses with expect_diagnosis(kind, tasks, resources, threads). ready()
starts a watcher thread that waits until every declared waiter's
innermost Python frame (sys._current_frames) is the declared function and
every declared lock is still held by the thread that recorded holding it
(RLock: the owner its repr names), writes the truth JSON (argv[1]) and
prints READY; then the watcher ends (the test waits for it to be gone).

Truth JSON: pid; threads {native id: {"name", "ident"}}; holders {lock id:
[native ids]}; task_holders {asyncio lock id: [task id]}; waits {native id: {"function", "resource", "timeout"}}; work {native
id: {"function", "future"}} for executor workers; diagnoses [{kind,
tasks, resources, threads}] (sorted); exit (1 when a diagnosis is
expected); watcher {native_id, exits}.
"""
import json
import os
import re
import sys
import threading
import time

# The threads settle within a second; a loaded machine gets longer.
SETTLE_TIMEOUT = 60


def hexid(obj):
    return "0x%x" % id(obj)


def _locked(lock):
    """Lock.locked(); an RLock has it only from 3.14: its repr says."""
    return lock.locked() if hasattr(lock, "locked") else repr(lock).startswith("<locked")


class ThreadTruth:
    def __init__(self):
        self.path = sys.argv[1]
        self.holders = {}   # lock -> native ids
        self.waits = []     # (thread, function, resource or None)
        self.diagnoses = []
        self.work = {}      # native id -> (function name, future)
        self.task_holders = {}  # asyncio lock id -> task id
        self.keep = []      # objects the truth names, kept alive
        self.lock = threading.Lock()

    def held(self, lock):
        with self.lock:
            self.holders.setdefault(id(lock), (lock, []))[1].append(threading.get_native_id())

    def task_held(self, lock, task):
        """An asyncio lock, held by a task (recorded inside its `async with`)."""
        self.task_holders[hexid(lock)] = hexid(task)
        self.keep.append(lock)

    def running(self, fn_name):
        """Called by a work item: records its worker, the item's future
        (the `self` of the _WorkItem.run frame below) and its callable."""
        frame = sys._getframe(1)
        while frame is not None and not (
                frame.f_code.co_qualname == "_WorkItem.run"
                and "concurrent" in frame.f_code.co_filename):
            frame = frame.f_back
        item = frame.f_locals["self"]
        del frame
        self.keep.append(item.future)
        with self.lock:
            self.work[threading.get_native_id()] = (fn_name, hexid(item.future))
        return item.future

    def expect_wait(self, thread, function, resource=None, timeout=False):
        self.waits.append((thread, function, resource, timeout))

    def expect_diagnosis(self, kind, tasks=(), resources=(), threads=()):
        self.keep.extend(tasks)
        self.keep.extend(resources)
        self.diagnoses.append((kind, list(tasks), list(resources), list(threads)))

    def ready(self, then=None):
        """Records the truth from a watcher thread; `then` (optional) runs
        in the watcher first and returns extra diagnoses' objects."""
        threading.Thread(target=self._watch, args=(then,), name="snarl-sample-watcher",
                         daemon=True).start()

    def _settled(self):
        frames = sys._current_frames()
        for thread, function, _, _ in self.waits:
            f = frames.get(thread.ident)
            if f is None or f.f_code.co_name != function:
                return False
        for lock, _ in self.holders.values():
            if not _locked(lock):
                return False
        return True

    def _watch(self, then):
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not self._settled():
            if time.monotonic() > deadline:
                print("SAMPLE ERROR: the threads did not settle", flush=True)
                os._exit(3)
            time.sleep(0.05)
        time.sleep(0.2)  # past the C call into the wait
        if then:
            then()
        by_ident = {t.ident: t for t in threading.enumerate()}
        doc = {"pid": os.getpid(), "threads": {}, "holders": {}, "waits": {}, "work": {}}
        for ident, t in by_ident.items():
            if t.name != "snarl-sample-watcher":
                doc["threads"][str(t.native_id)] = {"name": t.name, "ident": ident}
        for lock, natives in self.holders.values():
            m = re.search(r"owner=(\d+)", repr(lock))
            if m:  # an RLock names its owner: the truth is the object's own
                owner = by_ident.get(int(m.group(1)))
                natives = [owner.native_id] if owner else []
            doc["holders"][hexid(lock)] = sorted(set(natives))
        for thread, function, resource, timeout in self.waits:
            doc["waits"][str(thread.native_id)] = {
                "function": function, "resource": hexid(resource) if resource is not None else None,
                "timeout": timeout}
        for native, (fn, fut) in self.work.items():
            doc["work"][str(native)] = {"function": fn, "future": fut}
        doc["diagnoses"] = sorted(
            ({"kind": k, "tasks": sorted(hexid(t) for t in ts),
              "resources": sorted(hexid(r) for r in rs),
              "threads": sorted(t.native_id for t in ths)} for k, ts, rs, ths in self.diagnoses),
            key=lambda d: json.dumps(d, sort_keys=True))
        doc["task_holders"] = {k: [v] for k, v in self.task_holders.items()}
        doc["exit"] = 1 if self.diagnoses else 0
        doc["watcher"] = {"native_id": threading.get_native_id(), "exits": True}
        with open(self.path, "w") as f:
            json.dump(doc, f)
        print("READY", flush=True)
