"""`snarl check` in gdb (and lldb) against the snarl command line, on the
same core of a program with many tasks.

samples/many_tasks.py starts with N pending tasks (default 100,000) under
an interpreter (default: python3.14 in the Debian sid chroot, else this
machine's python3), a gcore core of it is made, and the sample ends. Then,
on that one core, in turn, --repeat times each after one uncounted warm-up
round:

- cli:     build/snarl check CORE
- gdb:     gdb --batch -nx EXE CORE, `source plugin/snarl_gdb.py`, `snarl check`
- gdb-bare: the same gdb without `snarl check`: what loading the core costs
- lldb:    the same with lldb (--lldb), `command script import`

Reported: the median wall time of each; for gdb also the median time of
the `snarl check` command alone, timed inside gdb around it; and the ratios
to the CLI (the goal: gdb's command at most 3x the CLI). gdb and lldb must
print exactly what the CLI prints.

Run as root (chroot, ptrace for gcore):
  /usr/bin/python3 tests/bench/bench_gdb.py [--tasks 100000] [--repeat 5] [--lldb]
      [--json OUT]
Exit status: 0 measured, 1 a debugger printed something else than the CLI,
2 the benchmark could not run.
"""
import argparse
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))
SAMPLE = os.path.join(PROJECT, "samples", "many_tasks.py")
SNARL = os.path.join(PROJECT, "build", "snarl")
GDB_SCRIPT = os.path.join(PROJECT, "plugin", "snarl_gdb.py")
LLDB_SCRIPT = os.path.join(PROJECT, "plugin", "snarl_lldb.py")
sys.path.insert(0, os.path.dirname(HERE))
import pythons  # noqa: E402  (the test matrix's own chroot lookup)

DEFAULT_ROOT = pythons.chroot_dir()
CHROOT_PYTHON = "/usr/bin/python3.14"
HOST_PYTHON = "/usr/bin/python3"
# Creating 100,000 tasks takes seconds; a million, tens of seconds.
READY_TIMEOUT = 900
# One run of any reader on the core.
RUN_TIMEOUT = 600
# gdb prints the command's own time on stderr after this tag.
TAG = "snarl-bench-command-seconds"
LLDB_NAMES = ["lldb"] + ["lldb-%d" % v for v in range(30, 13, -1)]


class BenchError(Exception):
    """The benchmark itself cannot go on (exit 2)."""


def make_core(args, tmp):
    """Starts the sample, waits for READY, cores it, ends it; (core, exe)."""
    chroot = args.root if os.path.isdir(args.root) and os.path.exists(
        os.path.join(args.root, args.python.lstrip("/"))) else None
    script = os.path.join(tmp, "many_tasks.py")
    if chroot:
        work = tempfile.mkdtemp(prefix="snarl-bench-", dir=os.path.join(chroot, "tmp"))
        shutil.copy(SAMPLE, work)
        script = "/" + os.path.relpath(os.path.join(work, "many_tasks.py"), chroot)
        argv = ["chroot", chroot, args.python, script, str(args.tasks)]
        exe = os.path.realpath(os.path.join(chroot, args.python.lstrip("/")))
    else:
        work = None
        shutil.copy(SAMPLE, script)
        python = args.python if os.path.exists(args.python) else HOST_PYTHON
        argv = [python, script, str(args.tasks)]
        exe = os.path.realpath(python)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
        words = (proc.stdout.readline().decode(errors="replace") if ready else "").split()
        if len(words) != 3 or words[0] != "READY":
            raise BenchError("the sample did not get ready: %r %s" % (
                words, proc.stderr.read().decode(errors="replace")[-2000:]))
        pid = int(words[1])
        out = subprocess.run(["gcore", "-o", os.path.join(tmp, "core"), str(pid)],
                             capture_output=True, timeout=RUN_TIMEOUT)
        core = os.path.join(tmp, "core.%d" % pid)
        if out.returncode != 0 or not os.path.exists(core):
            raise BenchError("gcore failed: %s" % out.stderr.decode(errors="replace"))
    finally:
        proc.kill()
        proc.wait()
        if work:
            shutil.rmtree(work, ignore_errors=True)
    return core, exe, chroot


def readers(args, core, exe, chroot):
    """{name: argv} of every reader to time."""
    gdb_load = ["gdb", "--batch", "-nx", "-q"]
    if chroot:
        gdb_load += ["-ex", "set sysroot " + chroot]
    gdb_load += ["-ex", "file " + exe, "-ex", "core-file " + core]
    timed = ["-ex", "source " + GDB_SCRIPT,
             "-ex", "python import time; _t0 = time.perf_counter()",
             "-ex", "snarl check",
             "-ex", "python import sys; sys.stderr.write('%s %%f\\n' %% "
                    "(time.perf_counter() - _t0))" % TAG]
    out = {"cli": [args.snarl, "check", core], "gdb": gdb_load + timed, "gdb-bare": gdb_load}
    lldb = next((shutil.which(n) for n in LLDB_NAMES if shutil.which(n)), None)
    if args.lldb and lldb:
        setup = ["-o", "platform select --sysroot %s remote-linux" % chroot] if chroot else []
        out["lldb"] = [lldb, "--batch", "-Q"] + setup + [
            "-o", "target create -c %s %s" % (core, exe),
            "-o", "command script import " + LLDB_SCRIPT, "-o", "snarl check"]
    return out


def measure(argv):
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, timeout=RUN_TIMEOUT,
                         stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    stderr = out.stderr.decode("utf-8", errors="replace")
    command = None
    for line in stderr.splitlines():
        if line.startswith(TAG + " "):
            command = float(line.split()[1])
    return {"wall_s": wall, "command_s": command, "status": out.returncode,
            "stdout": out.stdout.decode("utf-8", errors="replace"), "stderr": stderr[-2000:]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=100000, help="pending tasks (default 100000)")
    ap.add_argument("--repeat", type=int, default=5, help="counted runs of each (default 5)")
    ap.add_argument("--lldb", action="store_true", help="also time lldb")
    ap.add_argument("--root", default=DEFAULT_ROOT, help="the chroot (default $SNARL_CHROOT)")
    ap.add_argument("--python", default=CHROOT_PYTHON,
                    help="interpreter in the chroot, or on this machine when there is none")
    ap.add_argument("--snarl", default=SNARL, help="the snarl binary (default build/snarl)")
    ap.add_argument("--json", metavar="OUT", help="also write every run as JSON to OUT")
    args = ap.parse_args()
    for tool in ("gdb", "gcore"):
        if not shutil.which(tool):
            print("bench_gdb: %s is not installed" % tool, file=sys.stderr)
            return 2
    tmp = tempfile.mkdtemp(prefix="snarl-bench-gdb-")
    try:
        try:
            core, exe, chroot = make_core(args, tmp)
        except (BenchError, subprocess.TimeoutExpired) as e:
            print("bench_gdb: %s" % e, file=sys.stderr)
            return 2
        runs = {name: [] for name in readers(args, core, exe, chroot)}
        for round_ in range(args.repeat + 1):
            for name, argv in readers(args, core, exe, chroot).items():
                r = measure(argv)
                print("round %d %-8s %.3f s%s" % (round_, name, r["wall_s"],
                      " (command %.3f s)" % r["command_s"] if r["command_s"] else ""),
                      file=sys.stderr)
                if round_:
                    runs[name].append(r)
        cli_out = runs["cli"][0]["stdout"]
        bad = [n for n in ("gdb", "lldb") if n in runs and
               any(cli_out not in r["stdout"] for r in runs[n])]
        wall = {n: statistics.median(r["wall_s"] for r in rs) for n, rs in runs.items()}
        command = statistics.median(r["command_s"] for r in runs["gdb"])
        print("%d tasks, core %.0f MB, %s, median of %d runs" % (
            args.tasks, os.path.getsize(core) / 2**20, os.path.basename(exe), args.repeat))
        print("%-34s %8.3f s" % ("snarl check CORE (CLI)", wall["cli"]))
        print("%-34s %8.3f s   %.2fx the CLI" % ("gdb: the snarl check command", command,
                                                 command / wall["cli"]))
        print("%-34s %8.3f s   %.2fx the CLI" % ("gdb: whole run (load + command)", wall["gdb"],
                                                 wall["gdb"] / wall["cli"]))
        print("%-34s %8.3f s" % ("gdb: loading the core alone", wall["gdb-bare"]))
        if "lldb" in wall:
            print("%-34s %8.3f s   %.2fx the CLI" % ("lldb: whole run (load + command)",
                                                     wall["lldb"], wall["lldb"] / wall["cli"]))
        if bad:
            print("bench_gdb: %s printed something else than the CLI" % ", ".join(bad),
                  file=sys.stderr)
        if args.json:
            for rs in runs.values():
                for r in rs:
                    r.pop("stdout")
            with open(args.json, "w") as f:
                json.dump({"tasks": args.tasks, "executable": exe, "runs": runs,
                           "median_wall_s": wall, "median_gdb_command_s": command,
                           "machine": {"kernel": platform.release(), "cpus": os.cpu_count()}},
                          f, indent=1)
        return 1 if bad else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
