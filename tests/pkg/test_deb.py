"""The Debian package, as a user gets it: `make deb` builds it, and
`apt-get install ./snarl_*.deb` installs it into a throwaway overlay of a
clean Debian 12 minbase chroot (scripts/provision-debian12.sh) and of the
Debian unstable chroot of the test matrix, neither of which is changed.
From inside: `snarl --version` is the package's version; `snarl check` on
a lock-cycle sample running there reports exactly the deadlocks the sample
recorded; man page, completion, docs and the pytest plugin's entry point are
where snarl(1) says; gdb, installed next to it, has the `snarl` commands
without being told to load anything and reports the same; bash completion
offers the sample's PID.

Needs root (chroot, mount), dpkg-buildpackage with debhelper, and the
chroots; skipped with the reason otherwise, but not under CI=true, where
scripts/setup.sh provides all of it.
"""
import contextlib
import glob
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import harness  # noqa: E402
import pythons  # noqa: E402

DEBIAN12 = os.environ.get("SNARL_DEBIAN12_CHROOT", "/var/cache/snarl/bookworm")
SAMPLE = "diag_lock_cycle.py"
# Building the package compiles snarl; a loaded CI machine takes minutes.
BUILD_TIMEOUT = 900
# An install, a sample's run or a gdb session in a chroot.
STEP_TIMEOUT = 300
# An archive snapshot's Release file may be past its Valid-Until date.
APT = ["apt-get", "-o", "Acquire::Check-Valid-Until=false", "-y", "-q",
       "--no-install-recommends"]
# What apt says when it cannot fetch (no network, a stale index): an
# environment problem, not the package's.
FETCH_ERRORS = ("Failed to fetch", "Temporary failure resolving", "Could not resolve",
                "Unable to fetch some archives")


def _missing(reason):
    if os.environ.get("CI") == "true":
        pytest.fail("CI must have this: " + reason)
    pytest.skip(reason)


def _run(argv, timeout=STEP_TIMEOUT, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if os.geteuid() != 0:
        _missing("installing into a chroot needs root")
    for tool in ("dpkg-buildpackage", "dh", "scdoc", "chroot", "mount"):
        if not shutil.which(tool):
            _missing("%s is not installed (scripts/setup.sh installs it)" % tool)
    given = os.environ.get("SNARL_DEB")
    if given:
        return given
    build = tmp_path_factory.mktemp("deb-build")
    # nocheck: the unit tests the package build would run are make check's.
    out = _run(["make", "-C", ROOT, "deb", "BUILD=%s" % build], timeout=BUILD_TIMEOUT,
               env=dict(os.environ, DEB_BUILD_OPTIONS="nocheck"))
    assert out.returncode == 0, "make deb failed:\n%s\n%s" % (out.stdout[-4000:],
                                                              out.stderr[-4000:])
    debs = glob.glob(os.path.join(build, "snarl_*.deb"))
    assert len(debs) == 1, "make deb left %s in %s" % (debs, build)
    return debs[0]


def _field(deb, name):
    return _run(["dpkg-deb", "-f", deb, name]).stdout.strip()


@contextlib.contextmanager
def _overlay(lower):
    """A writable throwaway view of the chroot lower (overlayfs), with /proc
    mounted so that snarl, gdb and the completion see the processes."""
    work = tempfile.mkdtemp(prefix="snarl-pkg-")
    upper, scratch, root = (os.path.join(work, d) for d in ("upper", "work", "root"))
    for d in (upper, scratch, root):
        os.mkdir(d)
    mounted = []
    try:
        out = _run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=%s,upperdir=%s,workdir=%s" % (lower, upper, scratch), root])
        if out.returncode != 0:
            _missing("cannot mount an overlay over %s: %s" % (lower, out.stderr.strip()))
        mounted.append(root)
        proc = os.path.join(root, "proc")
        subprocess.run(["mount", "-t", "proc", "proc", proc], check=True)
        mounted.append(proc)
        yield root
    finally:
        for m in reversed(mounted):
            if subprocess.run(["umount", m]).returncode != 0:
                subprocess.run(["umount", "-l", m])
        shutil.rmtree(work, ignore_errors=True)


def _apt_install(root, *what):
    """apt-get install in the chroot root. What its cache holds is not
    fetched again (provision-debian12.sh fills the Debian 12 one)."""
    argv = ["chroot", root] + APT + ["install"]
    out = _run(argv + list(what), env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if out.returncode != 0 and any(e in out.stdout + out.stderr for e in FETCH_ERRORS):
        _missing("apt could not fetch %s into %s (network, or a stale index: run the "
                 "provisioning script): %s" % (" ".join(what), root, out.stderr.strip()[-500:]))
    assert out.returncode == 0, "apt-get install %s failed:\n%s\n%s" % (
        " ".join(what), out.stdout[-3000:], out.stderr[-3000:])
    return out


def _install_deb(root, deb):
    inside = "/tmp/" + os.path.basename(deb)
    shutil.copy(deb, os.path.join(root, inside.lstrip("/")))
    return inside


def _python(root, exe):
    version = _run(["chroot", root, exe, "-c",
                    "import sys; print('%d.%d.%d' % sys.version_info[:3])"]).stdout.strip()
    assert version, "%s does not run in %s" % (exe, root)
    return pythons.Python("%s (package test)" % version, version.rsplit(".", 1)[0], version,
                          ("chroot", root, exe), root)


def _diagnoses(doc):
    return sorted((d["kind"], sorted(d["tasks"]), sorted(d["resources"]))
                  for d in doc["diagnoses"])


@contextlib.contextmanager
def _check_sample(root, python):
    """`snarl check` from the chroot on the sample running there: exactly the
    diagnoses the sample recorded. Returns (sample's truth, JSON text)."""
    work = tempfile.mkdtemp(dir=os.path.join(root, "tmp"))
    try:
        with harness.Sample(python, SAMPLE, work) as s:
            harness.wait_watcher_gone(s.pid, s.truth)
            out = _run(["chroot", root, "snarl", "check", "--format", "json", str(s.pid)])
            assert out.returncode == 1, out.stderr
            doc = json.loads(out.stdout)
            assert doc["target"]["python"] == s.truth["python"]
            assert _diagnoses(doc) == _diagnoses(s.truth)
            yield s, out.stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _installed_files(root, deb):
    """What snarl(1) and the README promise, from inside the chroot."""
    version = _field(deb, "Version")
    out = _run(["chroot", root, "snarl", "--version"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "snarl %s\n" % version.split("-")[0]
    man = os.path.join(root, "usr/share/man/man1/snarl.1.gz")
    with gzip.open(man, "rt") as f:
        roff = f.read().replace("\\&", "")  # scdoc's zero-width escapes
    for section in ("NAME", "SYNOPSIS", "COMMANDS", "OPTIONS", "EXIT STATUS", "JSON"):
        assert '.SH "%s"' % section in roff or ".SH %s" % section in roff, section
    # The JSON documents are where the man page says they are.
    for name in ("json.md", "snarl-1.schema.json", "snarl-watch-1.schema.json"):
        path = "/usr/share/doc/snarl/" + name
        assert path in roff and os.path.isfile(os.path.join(root, path.lstrip("/"))), path
    for path in ("usr/share/bash-completion/completions/snarl",
                 "usr/share/zsh/vendor-completions/_snarl",
                 "usr/share/snarl/snarl_gdb.py", "usr/share/snarl/snarl_lldb.py",
                 "usr/lib/snarl/_snarl.abi3.so", "etc/gdb/gdbinit.d/snarl.py",
                 "usr/lib/python3/dist-packages/pytest_snarl.py"):
        assert os.path.isfile(os.path.join(root, path)), path
    if shutil.which("man"):
        page = _run(["man", "-l", man], env=dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="0"))
        assert page.returncode == 0 and "snarl watch" in page.stdout, page.stderr


def _bash_completion(root, pid):
    """The completion offers a Python process's PID (and not bash's own) as
    check's target, the graph formats, the diagnosis kinds."""
    script = ("source /usr/share/bash-completion/completions/snarl; "
              "complete_line() { COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); _snarl; "
              "printf '%s\\n' \"${COMPREPLY[@]}\"; echo ---; }; "
              "complete_line snarl check ''; complete_line snarl graph --format ''; "
              "complete_line snarl --fail-on lock-cycle,wake; echo \"bash $$\"")
    out = _run(["chroot", root, "bash", "-c", script], cwd="/")
    assert out.returncode == 0, out.stderr
    target, formats, kinds, tail = out.stdout.split("---\n")
    assert str(pid) in target.split()
    assert tail.split()[1] not in target.split()
    assert {"dot", "svg", "mermaid", "json"} <= set(formats.split())
    assert kinds.split() == ["lock-cycle,wake-cycle"]


def test_deb_metadata(deb):
    depends = _field(deb, "Depends")
    for lib in ("libelf1", "libzstd1", "liblzma5", "liblz4-1", "libc6"):
        assert lib in depends, depends
    assert _field(deb, "Package") == "snarl"


def test_deb_installs_and_works_on_a_clean_debian_12(deb):
    if not os.path.exists(os.path.join(DEBIAN12, ".snarl-bootstrap-complete")):
        _missing("no Debian 12 chroot at %s (scripts/provision-debian12.sh)" % DEBIAN12)
    with _overlay(DEBIAN12) as root:
        # Only the package: apt must find its dependencies by itself.
        _apt_install(root, _install_deb(root, deb))
        _installed_files(root, deb)
        # Debian's python3 finds the pytest plugin's entry point.
        _apt_install(root, "python3", "gdb")
        out = _run(["chroot", root, "python3", "-c",
                    "import importlib.metadata as m; "
                    "print(*(e.value for e in m.entry_points(group='pytest11')))"])
        assert out.stdout.split() == ["pytest_snarl"], out.stderr
        python = _python(root, "/usr/bin/python3")
        with _check_sample(root, python) as (s, cli):
            _bash_completion(root, s.pid)
            # gdb: the commands come from /etc/gdb/gdbinit.d, nothing sourced.
            g = _run(["chroot", root, "gdb", "-batch", "-q", "-p", str(s.pid),
                      "-ex", "snarl check --format json"])
            assert g.returncode == 0, g.stderr
            start = g.stdout.index('{"schema"')
            doc, _ = json.JSONDecoder().raw_decode(g.stdout[start:])
            assert _diagnoses(doc) == _diagnoses(json.loads(cli))


def test_deb_installs_and_works_on_debian_unstable(deb):
    sid = pythons.chroot_dir()
    if not os.path.exists(os.path.join(sid, "snarl-manifest.txt")):
        _missing("no Debian unstable chroot at %s (scripts/provision-pythons.sh)" % sid)
    with _overlay(sid) as root:
        # sid's libraries (libelf1t64...) are fetched: the chroot keeps none.
        _apt_install(root, _install_deb(root, deb))
        _installed_files(root, deb)
        exe = "/usr/bin/python3.14"
        if not os.path.exists(os.path.join(root, exe.lstrip("/"))):
            exe = "/usr/bin/python3"
        with _check_sample(root, _python(root, exe)) as (s, _):
            _bash_completion(root, s.pid)


def test_deb_has_no_lintian_errors(deb):
    if not shutil.which("lintian"):
        _missing("lintian is not installed (scripts/setup.sh installs it)")
    out = _run(["lintian", "--fail-on", "error", deb])
    assert out.returncode == 0, out.stdout + out.stderr
