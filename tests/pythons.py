"""Finds the real interpreters the test matrix runs: Debian's python3.X on
this machine, pyenv's builds, and the Debian unstable chroot that
scripts/provision-pythons.sh makes. Nothing here is hard-wired to one
machine: everything is found by looking, and what is missing is reported."""
import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

MINORS = (11, 12, 13, 14, 15)
# The versions CI must have (3.12 exists only where pyenv provides it).
REQUIRED_IN_CI = ("3.11", "3.13", "3.14", "3.15")


@dataclass(frozen=True)
class Python:
    label: str   # e.g. "3.14.10 (sid chroot)"
    minor: str   # "3.14"
    version: str
    argv: tuple  # how to start it, e.g. ("chroot", ROOT, "/usr/bin/python3.14")
    root: str = "/"  # the file-system root it sees
    debug: bool = False

    def host_path(self, path):
        """A path as the interpreter sees it, translated for this machine."""
        return path if self.root == "/" else os.path.join(self.root, path.lstrip("/"))

    def guest_path(self, host_path):
        if self.root == "/":
            return host_path
        return "/" + os.path.relpath(host_path, self.root)


def chroot_dir():
    return os.environ.get("SNARL_CHROOT", "/var/cache/snarl/sid")


def _version(argv):
    try:
        out = subprocess.run(list(argv) + ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3], hasattr(sys, 'gettotalrefcount'))"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None, False
    if out.returncode != 0:
        return None, False
    version, debug = out.stdout.split()
    return version, debug == "True"


def _candidates():
    for minor in MINORS:
        yield ("debian", ("/usr/bin/python3.%d" % minor,), "/")
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for exe in sorted(glob.glob(os.path.join(pyenv, "versions", "3.1[1-5]*", "bin", "python3.1[1-5]"))):
        yield ("pyenv", (exe,), "/")
    root = chroot_dir()
    if os.path.isdir(root) and shutil.which("chroot") and os.geteuid() == 0:
        for minor in MINORS:
            for suffix in ("", "d"):
                exe = "/usr/bin/python3.%d%s" % (minor, suffix)
                if os.path.exists(os.path.join(root, exe.lstrip("/"))):
                    yield ("sid chroot", ("chroot", root, exe), root)


def find_pythons():
    found, seen = [], set()
    for origin, argv, root in _candidates():
        exe = argv[-1]
        if not os.path.exists(exe if root == "/" else os.path.join(root, exe.lstrip("/"))):
            continue
        real = os.path.realpath(exe) if root == "/" else exe
        if (root, real) in seen:
            continue
        seen.add((root, real))
        version, debug = _version(argv)
        if not version or not re.match(r"3\.1[1-5]\.", version):
            continue
        minor = ".".join(version.split(".")[:2])
        label = "%s%s (%s)" % (version, " debug" if debug else "", origin)
        found.append(Python(label, minor, version, tuple(argv), root, debug))
    return found


PYTHONS = find_pythons()


def missing_required():
    have = {p.minor for p in PYTHONS}
    return [m for m in REQUIRED_IN_CI if m not in have]
