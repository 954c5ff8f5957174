"""Cores as they come in practice.

- Compressed as systemd-coredump stores them (zstd, xz, lz4): made here
  from a gcore core with the zstd, xz and lz4 tools, and read exactly like
  the plain core; the format is told by the magic bytes, not the name; a
  corrupt or truncated stream is a clean error naming the file.
- `--coredumpctl MATCH`: runs `coredumpctl dump -o TMP MATCH`; coredumpctl
  is not on every machine, so a stand-in on PATH checks the arguments and
  the plumbing, and its absence is a clean error.
- From a container: a core written inside a container (or chroot) names
  its files as the process saw them (the kernel writes NT_FILE from the
  process's root). The sid chroot's interpreters run in such a root; gcore,
  run from outside, names the files by their host paths, so the test core
  gets the paths the kernel would have written (the chroot prefix taken off
  its NT_FILE note). Without --sysroot the error lists the files not found;
  with --sysroot ROOT it reads like the original.
"""
import json
import os
import shutil
import struct
import subprocess

import pytest

import pythons
from harness import Sample, run_snarl

# The fastest level of each: the stream format is the same at every level,
# and xz's default takes tens of seconds on a core.
CODECS = {
    "zstd": ["zstd", "-q", "-1", "-c"],
    "xz": ["xz", "-0", "-c", "-T1"],
    "lz4": ["lz4", "-q", "-1", "-c"],
}
# The sample every test here reads: three lock cycles, all asleep.
SAMPLE = "diag_lock_cycle.py"
NT_FILE = 0x46494C45
PT_NOTE = 4
# Files the missing-files message may name before "and N more": it must
# stay one readable line, not the whole mapping list.
MESSAGE_MAX = 600

needs_gcore = pytest.mark.skipif(not shutil.which("gcore"), reason="gcore (gdb) not installed")


def _keys(doc):
    return sorted((d["kind"], tuple(sorted(d["tasks"])), tuple(sorted(d["resources"])))
                  for d in doc["diagnoses"])


def _check(*args):
    out = run_snarl("check", "--format", "json", *args)
    assert out.returncode in (0, 1), out.stderr.decode(errors="replace")
    return json.loads(out.stdout)


def _error(*args):
    out = run_snarl("check", *args)
    err = out.stderr.decode(errors="replace")
    assert out.returncode == 2, (out.returncode, err)
    assert err.startswith("snarl: ") and "hint: " in err, err
    return err


def _python(minor=None, root_only=None):
    for p in pythons.PYTHONS:
        if p.debug or (minor and p.minor != minor):
            continue
        if root_only is not None and (p.root != "/") != root_only:
            continue
        return p
    pytest.skip("no interpreter %s%s" % (minor or "", " in a chroot" if root_only else ""))


@pytest.fixture(scope="module")
def plain_core(tmp_path_factory):
    """A gcore core of the sample on a host interpreter, and what snarl
    reads from it."""
    if not shutil.which("gcore"):
        pytest.skip("gcore (gdb) not installed")
    work = tmp_path_factory.mktemp("cores")
    with Sample(_python(root_only=False), SAMPLE, str(work)) as s:
        core = s.gcore(str(work))
    return core, _check(core)


_PACKED = {}


def _packed(core, codec):
    """The core compressed with codec's tool (once per module)."""
    if not shutil.which(CODECS[codec][0]):
        pytest.skip("%s not installed" % CODECS[codec][0])
    if codec not in _PACKED:
        with open(core, "rb") as src:
            _PACKED[codec] = subprocess.run(CODECS[codec], stdin=src, capture_output=True,
                                            check=True, timeout=300).stdout
    return _PACKED[codec]


@needs_gcore
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_a_compressed_core_reads_like_the_plain_one(plain_core, codec, tmp_path):
    core, want = plain_core
    # A name that says nothing (systemd names them core.COMM....zst; a
    # copy may be called anything): the magic decides.
    packed = tmp_path / "core-copy"
    packed.write_bytes(_packed(core, codec))
    got = _check(packed)
    assert _keys(got) == _keys(want)
    assert got["target"] == want["target"]
    assert len(got["tasks"]) == len(want["tasks"])


@needs_gcore
def test_the_magic_decides_not_the_name(plain_core, tmp_path):
    core, want = plain_core
    misnamed = tmp_path / "core.xz"
    misnamed.write_bytes(_packed(core, "zstd"))
    assert _keys(_check(misnamed)) == _keys(want)


@needs_gcore
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_a_damaged_compressed_core_is_a_clean_error(plain_core, codec, tmp_path):
    packed = _packed(plain_core[0], codec)
    cut = tmp_path / "cut"
    cut.write_bytes(packed[:len(packed) // 2])
    err = _error(cut)
    assert str(cut) in err and codec in err and "truncated" in err
    flipped = bytearray(packed)
    for i in range(len(flipped) // 4, len(flipped), 997):
        flipped[i] ^= 0x5A
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(flipped))
    err = _error(bad)
    assert str(bad) in err and codec in err and "corrupt" in err


def test_a_compressed_file_that_is_not_a_core_says_so(tmp_path):
    if not shutil.which("zstd"):
        pytest.skip("zstd not installed")
    text = tmp_path / "notes.zst"
    subprocess.run(["zstd", "-q", "-o", str(text), "-"], input=b"not a core\n" * 100,
                   check=True, timeout=60)
    assert "not an ELF file" in _error(text)


# ---- coredumpctl ----

FAKE_COREDUMPCTL = """#!/bin/sh
# A stand-in for systemd's coredumpctl: records its arguments, and for
# `dump -o FILE python-sample` copies the test's core to FILE.
printf '%s\\n' "$@" > "{args}"
[ "$1" = dump ] && [ "$2" = -o ] || exit 1
if [ "$4" != python-sample ]; then
    echo "No coredumps found." >&2
    exit 1
fi
echo "           PID: 1234 (python-sample)" >&2
cp "{core}" "$3"
"""


def _fake_coredumpctl(tmp_path, core):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    args = tmp_path / "args"
    tool = bindir / "coredumpctl"
    tool.write_text(FAKE_COREDUMPCTL.format(args=args, core=core))
    tool.chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ.get("PATH", "")),
               TMPDIR=str(tmp_path / "tmp"))
    os.mkdir(env["TMPDIR"])
    return env, args


def test_coredumpctl_missing_is_a_clean_error(snarl, tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))
    out = subprocess.run([snarl, "check", "--coredumpctl", "python3"], capture_output=True,
                         env=env, timeout=60)
    err = out.stderr.decode()
    assert out.returncode == 2
    assert "coredumpctl" in err and "not on PATH" in err and "coredumpctl dump -o" in err


@needs_gcore
def test_coredumpctl_fetches_the_core_and_cleans_up(snarl, plain_core, tmp_path):
    core, want = plain_core
    env, args = _fake_coredumpctl(tmp_path, core)
    out = subprocess.run([snarl, "check", "--format", "json", "--coredumpctl", "python-sample"],
                         capture_output=True, env=env, timeout=300)
    assert out.returncode == 1, out.stderr
    assert _keys(json.loads(out.stdout)) == _keys(want)
    argv = args.read_text().splitlines()
    assert argv[:2] == ["dump", "-o"] and argv[3] == "python-sample"
    assert argv[2].startswith(env["TMPDIR"] + "/")
    assert os.listdir(env["TMPDIR"]) == []  # the fetched core is gone
    # coredumpctl's own words go to stderr: stdout is the JSON alone.
    assert b"PID: 1234" in out.stderr


@needs_gcore
def test_coredumpctl_without_a_match_is_a_clean_error(snarl, plain_core, tmp_path):
    env, _ = _fake_coredumpctl(tmp_path, plain_core[0])
    out = subprocess.run([snarl, "check", "--coredumpctl", "nothing-like-it"],
                         capture_output=True, env=env, timeout=60)
    err = out.stderr.decode()
    assert out.returncode == 2
    assert "no core for 'nothing-like-it'" in err and "coredumpctl list" in err
    assert os.listdir(env["TMPDIR"]) == []


# ---- a core from a container ----

def _strip_root(core, root, dest):
    """Rewrites the NT_FILE note's paths as the process saw them (without
    root), in place of the host paths gcore wrote. Returns how many."""
    data = bytearray(open(core, "rb").read())
    assert data[:4] == b"\x7fELF"
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    prefix = root.rstrip("/").encode()
    changed = 0
    for i in range(phnum):
        p_type, _, offset, _, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type != PT_NOTE:
            continue
        at, end = offset, offset + filesz
        while at + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, at)
            desc = at + 12 + ((namesz + 3) & ~3)
            if ntype == NT_FILE and data[at + 12:at + 12 + namesz] == b"CORE\0":
                count, _ = struct.unpack_from("<QQ", data, desc)
                names_at = desc + 16 + 24 * count
                names = bytes(data[names_at:desc + descsz]).split(b"\0")[:count]
                new = [n[len(prefix):] if n.startswith(prefix + b"/") else n for n in names]
                changed += sum(a != b for a, b in zip(names, new))
                blob = b"\0".join(new) + b"\0"
                room = desc + descsz - names_at
                data[names_at:names_at + room] = blob + b"\0" * (room - len(blob))
            at = desc + ((descsz + 3) & ~3)
    with open(dest, "wb") as f:
        f.write(data)
    return changed


@pytest.fixture(scope="module")
def container_core(tmp_path_factory):
    """(core as gcore wrote it, the same with the container's paths, the
    root, what snarl reads from the first)."""
    if not shutil.which("gcore"):
        pytest.skip("gcore (gdb) not installed")
    py = _python(minor="3.14", root_only=True)
    work = tmp_path_factory.mktemp("container")
    with Sample(py, SAMPLE, str(work)) as s:
        core = s.gcore(str(work))
    inside = str(work / "core.container")
    assert _strip_root(core, py.root, inside) > 0
    return core, inside, py.root, _check(core)


def test_a_container_core_without_sysroot_names_the_missing_files(container_core):
    _, core, root, _ = container_core
    err = _error(core)
    first = err.splitlines()[0]
    assert "not found on this machine" in first
    assert "/usr/bin/python3.14" in first
    assert len(first) < MESSAGE_MAX and " more" in first, first
    assert "--sysroot" in err


def test_a_container_core_reads_through_sysroot(container_core):
    original, core, root, want = container_core
    got = _check("--sysroot", root, core)
    assert _keys(got) == _keys(want)
    assert len(got["tasks"]) == len(want["tasks"])
    assert got["target"]["python"] == want["target"]["python"]


def test_a_wrong_sysroot_says_where_it_looked(container_core, tmp_path):
    _, core, _, _ = container_core
    err = _error("--sysroot", tmp_path, core)
    assert "not found under %s" % tmp_path in err.splitlines()[0]
    assert "root file system the process ran in" in err
