"""Runs a sample under a real interpreter until it reports READY, makes a
core of it with gcore, and runs snarl; the sample's own JSON is the truth."""
import json
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.path.join(ROOT, "samples")
SNARL = os.path.join(ROOT, "build", "snarl")
# A sample settles in well under a second; allow for a loaded CI machine.
READY_TIMEOUT = 120
# A sample's recording thread ends right after READY; it is gone well
# within this many seconds even on a loaded machine.
WATCHER_EXIT_TIMEOUT = 60


class Sample:
    """A running sample process; use as a context manager."""

    def __init__(self, python, name, tmp, args=()):
        self.python = python
        self.name = name
        self.args = list(args)  # after the truth path
        # The sample runs inside the interpreter's root (a chroot for some),
        # so copy the samples there.
        base = python.host_path("/tmp")
        self.dir = tempfile.mkdtemp(prefix="snarl-", dir=base)
        shutil.copytree(SAMPLES, os.path.join(self.dir, "samples"))
        self.truth_path = os.path.join(self.dir, "truth.json")
        self.proc = None
        self.pid = None

    def __enter__(self):
        script = self.python.guest_path(os.path.join(self.dir, "samples", self.name))
        truth = self.python.guest_path(self.truth_path)
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8")
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(list(self.python.argv) + [script, truth] + self.args,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, text=True)
        # Wait for the line with a deadline: a sample that hangs before READY
        # must fail its test, not the whole run.
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "READY":
            self.proc.kill()
            raise RuntimeError("sample %s did not get ready: %r %s" %
                               (self.name, line, self.proc.stderr.read()))
        with open(self.truth_path, encoding="utf-8") as f:
            self.truth = json.load(f)
        self.pid = self.truth["pid"]
        return self

    def __exit__(self, *exc):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def gcore(self, dest_dir):
        prefix = os.path.join(dest_dir, "core")
        out = subprocess.run(["gcore", "-o", prefix, str(self.pid)],
                             capture_output=True, text=True, timeout=300)
        path = "%s.%d" % (prefix, self.pid)
        if out.returncode != 0 or not os.path.exists(path):
            raise RuntimeError("gcore failed: %s" % out.stderr)
        return path


def run_snarl(*args, timeout=300):
    return subprocess.run([SNARL] + [str(a) for a in args], capture_output=True,
                          timeout=timeout)


def snarl_json(*args):
    out = run_snarl(*args, "--format", "json")
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return json.loads(out.stdout.decode("utf-8"))


WATCHER = "snarl-sample-watcher"  # the samples' READY thread, not in the truth


def sample_threads(doc):
    """The threads of a snarl document that the sample's truth describes."""
    return [t for t in doc["threads"] if t["name"] != WATCHER]


def wait_watcher_gone(pid, truth):
    """The sample's recording thread ends after READY: wait until the
    kernel no longer lists it (its Python thread state is gone before)."""
    watcher = truth.get("watcher") or {}
    if not watcher.get("exits"):
        return
    path = "/proc/%d/task/%d" % (pid, watcher["native_id"])
    deadline = time.monotonic() + WATCHER_EXIT_TIMEOUT
    while os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError("the sample's recording thread %d did not end" %
                               watcher["native_id"])
        time.sleep(0.01)


def core_segments(data):
    """(address, file offset, size in the file) of a core's PT_LOAD
    segments that hold bytes; data is the core file's contents."""
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phnum = struct.unpack_from("<H", data, 56)[0]
    out = []
    for i in range(phnum):
        typ, _, off, va, _, fsz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + i * 56)
        if typ == 1 and fsz:
            out.append((va, off, fsz))
    return out
