"""snarl tasks against CPython's own `python3.14 -m asyncio ps`, side by side
on the same live process, at several numbers of pending tasks.

For each size N a 3.14 sample (samples/many_tasks.py) starts in the Debian
sid chroot with N pending tasks and says READY; then, on that one process,
`snarl tasks`, the reference and `snarl tasks --format json` run in turn,
--repeat times each, and each run's wall time and peak RSS are taken from
wait4. snarl must list N + 1 tasks (the sample's and asyncio.run's main
task); the reference may fail (asyncio ps stops past 65,536 tasks with "Task
list appears corrupted"), which is reported as its result at that size.

The reference needs /proc inside the chroot. The sample runs in a private
mount namespace (`unshare -m --mount-proc=ROOT/proc chroot ROOT python3.14`)
and the reference joins that namespace and root (`nsenter -t PID -m -r`):
nothing is mounted on this machine's namespace, and the namespace goes away
with the sample. (A reference in a namespace of its own cannot read the
sample: /proc/PID/maps then names the sample's files by their path outside
the chroot, which do not exist inside it.) The processes measured are
python3.14 and snarl themselves: unshare, chroot and nsenter exec, never
fork.

Run as root (chroot, namespaces, ptrace):
  /usr/bin/python3 tests/bench/bench_tasks.py [--sizes 1000,10000,100000,1000000]
      [--repeat N] [--json OUT]
Exit status: 0 measured (also when the reference fails), 1 snarl failed or
listed a wrong number of tasks, 2 the benchmark could not run.
"""
import argparse
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))
SAMPLE = os.path.join(PROJECT, "samples", "many_tasks.py")
SNARL = os.path.join(PROJECT, "build", "snarl")
sys.path.insert(0, os.path.dirname(HERE))
import pythons  # noqa: E402  (the test matrix's own chroot lookup)

DEFAULT_ROOT = pythons.chroot_dir()
DEFAULT_PYTHON = "/usr/bin/python3.14"
DEFAULT_PYTHON_NEXT = "/usr/bin/python3.15"
# A million tasks take a while to create (tens of seconds on a small box).
READY_TIMEOUT = 900
# One run of either tool; the reference on a big process is the slow one.
RUN_TIMEOUT = 600
# GNU time: the peak RSS of the tool itself (see measure).
TIME = "/usr/bin/time"
TEXT_HEADER = re.compile(r"^(\d+) tasks? in (\d+) loops?\b")


class BenchError(Exception):
    """The benchmark itself cannot go on (exit 2)."""


class Sample:
    """many_tasks.py with n tasks, in the chroot, in a private mount
    namespace with /proc mounted in the chroot; use as a context manager."""

    def __init__(self, root, python, n, ready_timeout, shape="mixed"):
        self.root, self.python, self.n, self.shape = root, python, n, shape
        self.ready_timeout = ready_timeout
        self.proc = None
        self.dir = None

    def __enter__(self):
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self):
        self.dir = tempfile.mkdtemp(prefix="snarl-bench-", dir=os.path.join(self.root, "tmp"))
        shutil.copy(SAMPLE, self.dir)
        script = "/" + os.path.relpath(os.path.join(self.dir, "many_tasks.py"), self.root)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1"}
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--mount-proc=" + os.path.join(self.root, "proc"),
             "chroot", self.root, self.python, script, str(self.n), self.shape],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        ready, _, _ = select.select([self.proc.stdout], [], [], self.ready_timeout)
        line = self.proc.stdout.readline().decode(errors="replace") if ready else ""
        self.settle_s = time.perf_counter() - t0
        words = line.split()
        if len(words) != 3 or words[0] != "READY":
            self.proc.kill()
            err = self.proc.stderr.read().decode(errors="replace")
            raise BenchError("sample %s with %d tasks did not get ready within %ds: %r %s"
                             % (self.shape, self.n, self.ready_timeout, line, err[-2000:]))
        self.pid, self.expected = int(words[1]), int(words[2])
        if self.pid != self.proc.pid:
            raise BenchError("sample pid %d is not the process started (%d): something forked"
                             % (self.pid, self.proc.pid))
        self.rss_mb = status_kb(self.pid, "VmRSS") / 1024
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def status_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def proc_mounted(root):
    """Whether ROOT/proc is mounted in this machine's mount namespace."""
    target = os.path.join(root, "proc")
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def measure(argv, tmp, timeout):
    """Runs argv once: {"wall_s", "user_s", "sys_s", "max_rss_mb", "status",
    "stdout", "stderr"}. Wall time from just before the fork to the reaping.

    Peak RSS comes from GNU time, not from our own wait4: a child forked by
    this Python process starts with our page counts, and its ru_maxrss never
    drops below our own peak (tens of MB once we have parsed a big JSON
    document). time's child starts from time's few pages; every wrapper
    after it (nsenter) execs, so the figure is the tool's own peak."""
    out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
    rss_path = os.path.join(tmp, "rss")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([TIME, "-f", "%M", "-o", rss_path] + argv,
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = t0 + timeout
        timed_out = False
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                # Kills time; its child, left alone, is killed by its pid.
                for child in children(proc.pid):
                    os.kill(child, signal.SIGKILL)
                proc.kill()
                timed_out = True
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            # Short polls: wall times down to milliseconds stay accurate.
            time.sleep(0.0005)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped
    with open(out_path, "rb") as f:
        stdout = f.read().decode("utf-8", errors="replace")
    with open(err_path, "rb") as f:
        stderr = f.read().decode("utf-8", errors="replace")
    try:
        with open(rss_path) as f:
            rss_kb = int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        rss_kb = 0
    return {"wall_s": wall, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
            "max_rss_mb": rss_kb / 1024,
            "status": "timeout" if timed_out else os.waitstatus_to_exitcode(status),
            "stdout": stdout, "stderr": stderr}


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def check_count(run, expected, what, statuses=(0,)):
    if run["status"] not in statuses:
        return "%s exited %s: %s" % (what, run["status"], last_line(run["stderr"]))
    return None


def check_snarl_tasks(run, expected):
    err = check_count(run, expected, "snarl tasks")
    if err:
        return err
    m = TEXT_HEADER.match(run["stdout"])
    if not m:
        return "snarl tasks: no 'N tasks in M loops' header: %r" % run["stdout"][:200]
    run["tasks"] = int(m.group(1))
    if run["tasks"] != expected:
        return "snarl tasks listed %d tasks, expected %d" % (run["tasks"], expected)
    return None


def check_snarl_check(run, expected):
    """check prints a verdict and exits 0 (nothing found) or 1 (these
    samples are all asleep: nothing can ever wake their loop)."""
    err = check_count(run, expected, "snarl check", (0, 1))
    if err:
        return err
    if not run["stdout"].strip():
        return "snarl check printed nothing"
    return timing(run)


def check_snarl_tree(run, expected):
    err = check_count(run, expected, "snarl tree", (0, 1))
    if err:
        return err
    return None if run["stdout"].strip() else "snarl tree printed nothing"


def check_snarl_graph(run, expected):
    err = check_count(run, expected, "snarl graph --format json", (0, 1))
    if err:
        return err
    try:
        doc = json.loads(run["stdout"])
    except ValueError as e:
        return "snarl graph --format json: not JSON: %s" % e
    tasks = doc.get("tasks", [])
    run["tasks"] = sum(1 for t in tasks if t.get("state") == "pending")
    if run["tasks"] != expected:
        return "snarl graph --format json listed %d pending tasks, expected %d" % (
            run["tasks"], expected)
    return None


TIMING = re.compile(r"^snarl: timing: frozen ([\d.]+) ms", re.M)


def timing(run):
    """check runs with --timing: how long the target was stopped."""
    m = TIMING.search(run["stderr"])
    run["frozen_ms"] = float(m.group(1)) if m else None
    return None


def check_reference(run, expected):
    """None if asyncio ps printed its table, else its message. The table has
    one row per (task, awaiter); the distinct task ids are counted."""
    lines = run["stdout"].splitlines()
    if run["status"] != 0 or len(lines) < 2 or not lines[0].startswith("tid"):
        return last_line(run["stdout"] + "\n" + run["stderr"]) or "exit status %s" % run["status"]
    ids = set()
    for line in lines[2:]:
        cols = line.split()
        if len(cols) >= 2 and cols[1].startswith("0x"):
            ids.add(cols[1])
    run["tasks"] = len(ids)
    return None


def check_reference_tree(run, expected):
    """None if asyncio pstree printed a tree (or says there is a cycle,
    which is its answer for a cycle), else its message."""
    if run["status"] != 0 or not run["stdout"].strip():
        return last_line(run["stdout"] + "\n" + run["stderr"]) or "exit status %s" % run["status"]
    return None


def last_line(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else ""


def strip(run):
    """A run without its output, for the JSON report."""
    return {k: v for k, v in run.items() if k not in ("stdout", "stderr")}


def median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


# What runs on each sample, in turn: name, how to check its output, argv
# after the tool. snarl tools are our binary; reference ones run the
# sample's own interpreter in its namespace.
SNARL_TOOLS = [
    ("check", check_snarl_check, ["check", "--timing"]),
    ("tasks", check_snarl_tasks, ["tasks"]),
    ("tree", check_snarl_tree, ["tree"]),
    ("graph", check_snarl_graph, ["graph", "--format", "json"]),
]
REFERENCE_TOOLS = [
    ("ps", check_reference, ["-m", "asyncio", "ps"]),
    ("pstree", check_reference_tree, ["-m", "asyncio", "pstree"]),
]
TOOL_NAMES = [t[0] for t in SNARL_TOOLS + REFERENCE_TOOLS]


def bench_case(case, args, tmp):
    python, shape, n = case
    result = {"python": python, "shape": shape, "size": n}
    with Sample(args.root, python, n, args.ready_timeout, shape) as sample:
        if proc_mounted(args.root):
            raise BenchError("%s/proc is visible in this mount namespace" % args.root)
        result.update(expected_tasks=sample.expected, sample_settle_s=sample.settle_s,
                      sample_rss_mb=sample.rss_mb)
        print("  %s %s %d: sample %d ready in %.1f s, %d tasks, %.0f MB" %
              (os.path.basename(python), shape, n, sample.pid, sample.settle_s, sample.expected,
               sample.rss_mb), file=sys.stderr, flush=True)
        pid = str(sample.pid)
        tools = []
        for name, check, argv in SNARL_TOOLS:
            tools.append((name, check, [args.snarl] + argv + [pid]))
        for name, check, argv in REFERENCE_TOOLS:
            if not args.no_reference:
                tools.append((name, check, ["nsenter", "-t", pid, "-m", "-r", python] + argv + [pid]))
        repeat = args.large_repeat if n >= 1000000 and args.large_repeat else args.repeat
        runs = {name: [] for name, _, _ in tools}
        errors = {name: [] for name, _, _ in tools}
        # Round -1 warms the page cache (both tools' files, the sample's
        # pages) and is not counted.
        for rnd in range(0 if args.no_warmup else -1, repeat):
            for name, check, argv in tools:
                if name in ("ps", "pstree") and rnd >= 0 and errors[name] and \
                        len(errors[name]) == len(runs[name]):
                    continue  # it failed every time so far: once is the finding
                run = measure(argv, tmp, args.timeout)
                err = check(run, sample.expected)
                run["error"] = err
                print("    %-7s round %2d: %8.3f s %7.1f MB %s" %
                      (name, rnd, run["wall_s"], run["max_rss_mb"],
                       "" if err is None else "FAILED: " + err[:100]),
                      file=sys.stderr, flush=True)
                if rnd < 0:
                    continue
                runs[name].append(run)
                if err is not None:
                    errors[name].append(err)
        if sample.proc.poll() is not None:
            raise BenchError("the sample exited during the measurements")
    result["repeat"] = repeat
    for name in runs:
        ok = [r for r in runs[name] if r["error"] is None]
        result[name] = {
            "median_s": median(ok, "wall_s"),
            "min_s": min((r["wall_s"] for r in ok), default=None),
            "median_user_s": median(ok, "user_s"),
            "median_sys_s": median(ok, "sys_s"),
            "median_frozen_ms": median(ok, "frozen_ms"),
            "peak_rss_mb": max((r["max_rss_mb"] for r in runs[name]), default=None),
            "failed": len(errors[name]),
            "error": errors[name][0] if errors[name] else None,
            "median_s_to_failure": median([r for r in runs[name] if r["error"]], "wall_s"),
            "runs": [strip(r) for r in runs[name]],
        }
    return result


def fmt_s(x):
    return "-" if x is None else "%.3f" % x if x < 10 else "%.1f" % x


def fmt_mb(x):
    return "-" if x is None else "%.0f" % x


def ratio(a, b):
    return "-" if a is None or not b else "%.2f" % (a / b) if a / b < 10 else "%.0f" % (a / b)


def tool_s(r, name):
    t = r.get(name)
    if t is None:
        return "-"
    if t["failed"]:
        return "failed"
    return fmt_s(t["median_s"])


def table(results):
    head = ["python", "shape", "tasks", "check s", "tasks s", "tree s", "graph s",
            "check/tasks", "ps s", "pstree s", "ps/tasks", "check MB", "tasks MB", "ps MB",
            "frozen ms", "check us/task"]
    rows = []
    for r in results:
        ck, tk, ps = r["check"]["median_s"], r["tasks"]["median_s"], None
        if "ps" in r and not r["ps"]["failed"]:
            ps = r["ps"]["median_s"]
        frozen = r["check"]["median_frozen_ms"]
        rows.append([os.path.basename(r["python"]), r["shape"], "{:,}".format(r["expected_tasks"]),
                     tool_s(r, "check"), tool_s(r, "tasks"), tool_s(r, "tree"),
                     tool_s(r, "graph"), ratio(ck, tk), tool_s(r, "ps"), tool_s(r, "pstree"),
                     ratio(ps, tk), fmt_mb(r["check"]["peak_rss_mb"]),
                     fmt_mb(r["tasks"]["peak_rss_mb"]),
                     fmt_mb(r["ps"]["peak_rss_mb"]) if "ps" in r else "-",
                     "-" if frozen is None else "%.0f" % frozen,
                     "-" if ck is None else "%.1f" % (ck * 1e6 / r["expected_tasks"])])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |"]
    out.append("| " + " | ".join("-" * w for w in widths) + " |")
    for row in rows:
        out.append("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |")
    notes = []
    for r in results:
        for name in ("ps", "pstree"):
            if name in r and r[name]["failed"]:
                notes.append("%s %s %s at %s: %s (after %s s)" % (
                    os.path.basename(r["python"]), "asyncio " + name, "failed", r["shape"],
                    r[name]["error"], fmt_s(r[name]["median_s_to_failure"])))
    return "\n".join(out + [""] + notes)


def environment(args):
    ver = subprocess.run([args.snarl, "--version"], capture_output=True, text=True).stdout.strip()
    pys = {}
    for python in args.pythons:
        pys[python] = subprocess.run(["chroot", args.root, python, "-VV"], capture_output=True,
                                     text=True).stdout.strip()
    return {"snarl": ver, "python": pys, "kernel": platform.release(),
            "cpus": os.cpu_count(), "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


# The shapes and their sizes (samples/many_tasks.py): full, and --quick. For
# heap the size is thousands of objects.
SHAPES = {
    "mixed": ("1000,10000,100000,1000000", "1000,10000,100000"),
    "event": ("1000000", "100000"),
    "locks": ("100000", "100000"),
    "gather": ("1000000", "100000"),
    "wait": ("1000000", "100000"),
    "chain": ("10000", "10000"),
    "deep": ("100000", "20000"),
    "heap": ("10000", "1000"),
}


def cases(args):
    """(python, shape, n) in the order they run."""
    out = []
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for shape in shapes:
        if shape not in SHAPES:
            raise BenchError("unknown shape %r (have %s)" % (shape, ", ".join(SHAPES)))
    for python in args.pythons:
        for shape in shapes:
            if args.sizes and shape == "mixed":
                sizes = args.sizes
            else:
                sizes = SHAPES[shape][1 if args.quick else 0]
            for n in sizes.split(","):
                n = int(n.replace("_", ""))
                if args.max_size and n > args.max_size and shape != "heap":
                    continue
                out.append((python, shape, n))
            if args.shapes_on_first and python != args.pythons[0]:
                break  # the other interpreters only run the first shape
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller sizes (no 1M), 3 runs, 3.14 only: a few minutes")
    ap.add_argument("--sizes", help="comma-separated numbers of tasks for the mixed shape "
                    "(default %s, --quick %s)" % SHAPES["mixed"])
    ap.add_argument("--shapes", default=",".join(SHAPES),
                    help="comma-separated shapes (default %(default)s)")
    ap.add_argument("--max-size", type=int, default=0, help="skip cases with more tasks")
    ap.add_argument("--repeat", type=int, default=0, help="runs of each tool per case "
                    "(default 5, --quick 3)")
    ap.add_argument("--large-repeat", type=int, default=0,
                    help="runs per tool at 1,000,000 tasks and more (default: --repeat)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    ap.add_argument("--root", default=DEFAULT_ROOT,
                    help="the chroot with the interpreters (default $SNARL_CHROOT or %s)"
                    % DEFAULT_ROOT)
    ap.add_argument("--python", action="append", dest="pythons",
                    help="interpreter inside the chroot, repeatable (default %s and %s; "
                    "--quick: %s)" % (DEFAULT_PYTHON, DEFAULT_PYTHON_NEXT, DEFAULT_PYTHON))
    ap.add_argument("--all-shapes-each-python", dest="shapes_on_first", action="store_false",
                    help="run every shape under every interpreter (default: the shapes "
                    "beside mixed under the first only)")
    ap.add_argument("--no-reference", action="store_true", help="time snarl alone")
    ap.add_argument("--snarl", default=SNARL, help="the snarl binary (default build/snarl)")
    ap.add_argument("--timeout", type=int, default=0,
                    help="seconds per tool run (default %d, --quick 120)" % RUN_TIMEOUT)
    ap.add_argument("--ready-timeout", type=int, default=READY_TIMEOUT,
                    help="seconds for a sample to create its tasks")
    ap.add_argument("--no-warmup", action="store_true", help="count the first round too")
    args = ap.parse_args()
    if not args.pythons:
        args.pythons = [DEFAULT_PYTHON] if args.quick else [DEFAULT_PYTHON, DEFAULT_PYTHON_NEXT]
    args.repeat = args.repeat or (3 if args.quick else 5)
    args.timeout = args.timeout or (120 if args.quick else RUN_TIMEOUT)

    # SIGTERM and SIGHUP unwind like Ctrl-C, so the sample is always killed.
    def interrupted(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    try:
        todo = cases(args)
        for path, what in [(args.snarl, "snarl (run make)"), (TIME, "GNU time")] + [
                (os.path.join(args.root, p.lstrip("/")), "python in the chroot")
                for p in args.pythons]:
            if not os.path.exists(path):
                raise BenchError("no %s at %s" % (what, path))
        if os.geteuid() != 0:
            raise BenchError("run as root: chroot, mount namespaces and ptrace")
        if proc_mounted(args.root):
            raise BenchError("%s/proc is already mounted here; unmount it first" % args.root)
        env = environment(args)
        print("%s; %s; %d CPUs" % (env["snarl"], "; ".join(env["python"].values()), env["cpus"]),
              file=sys.stderr)
        results = []
        status = 0
        with tempfile.TemporaryDirectory(prefix="snarl-bench-") as tmp:
            for case in todo:
                r = bench_case(case, args, tmp)
                results.append(r)
                for name, _, _ in SNARL_TOOLS:
                    if r[name]["failed"]:
                        print("snarl %s failed on %s: %s" % (name, case, r[name]["error"]),
                              file=sys.stderr)
                        status = 1
        if proc_mounted(args.root):
            raise BenchError("%s/proc is visible in this mount namespace after the run" % args.root)
    except BenchError as e:
        print("bench_tasks: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_tasks: interrupted", file=sys.stderr)
        return 2

    print()
    print("snarl beside python3.X -m asyncio ps / pstree, same live process; median wall time "
          "of %s runs; peak RSS of the tool process; frozen: how long check stopped the target"
          % ("/".join(sorted({str(r["repeat"]) for r in results}))))
    print()
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": results}, f, indent=1)
            f.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
