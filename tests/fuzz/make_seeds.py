"""Makes the fuzz seeds in tests/fuzz/seeds/ from real cores of the samples.

For every interpreter tests/pythons.py finds (release builds, one per minor
version) it starts samples under the e2e harness, makes a core with gcore and
derives:

  engine/  replayable images (snarl-record): for one deadlock sample every
           command, check's reachability pass included (the large seed); for
           the other samples stacks and task ID (small seeds)
  core/    the core cut down to its headers, its notes and the bytes the
           stacks analysis reads, one PT_LOAD per run of them
  sym/     skeletons of the ELF files the analysis looked symbols up in: the
           headers, symbol and string tables, notes and the small sections
           the engine reads; other section contents dropped

Seeds are stored gzip-compressed (tests/fuzz/run.sh unpacks them into
build/fuzz/). Needs root (gcore, the chroot interpreters) and build/snarl-record.
Usage: python3 tests/fuzz/make_seeds.py [--out DIR] [--minors 3.11,3.14]
"""
import argparse
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "e2e")]

import pythons  # noqa: E402
from harness import Sample  # noqa: E402

RECORD = os.path.join(ROOT, "build", "snarl-record")
# The deadlock sample recorded with every command (reachability included).
FULL_SAMPLE = "diag_lock_cycle.py"
# Samples recorded with the commands that read little (stacks, task ID).
SMALL_SAMPLES = ("reach_tasks.py", "aio_primitives.py", "diag_await_cycle.py",
                 "diag_wake_cycle.py", "diag_loop_blocked.py")
# ELF sections whose contents the symbol layer reads.
SYM_KEEP_TYPES = {2, 3, 7, 11}  # SHT_SYMTAB, SHT_STRTAB, SHT_NOTE, SHT_DYNSYM
SYM_KEEP_NAMES = {b".PyRuntime", b".AsyncioDebug"}
# Symbol table entries kept besides the ones the engine looks up.
SYM_EXTRA_ENTRIES = 64


# Seeds name no home directory of the machine that made them (pyenv's
# interpreters live under it): it becomes a neutral path of the same length,
# so offsets and sizes inside images and cores stay right.
HOME = os.path.expanduser("~").rstrip("/").encode()
NEUTRAL_HOME = (b"/home/" + b"u" * len(HOME))[:len(HOME)]


def gz_write(path, data):
    if len(HOME) > 1:
        data = data.replace(HOME + b"/", NEUTRAL_HOME + b"/")
    # mtime 0: the same seed compresses to the same bytes every time.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9,
                                                 mtime=0, filename="") as f:
        f.write(data)


def image_records(data):
    """(type, payload) of each record of a snarl image."""
    off, out = 12, []
    while off + 5 <= len(data):
        typ, n = struct.unpack_from("<BI", data, off)
        out.append((typ, data[off + 5:off + 5 + n]))
        off += 5 + n
    return out


def image_ranges(data):
    return [(struct.unpack_from("<Q", p)[0], len(p) - 8) for t, p in image_records(data) if t == 5]


def image_symbols(data):
    maps = [p[24:].decode() for t, p in image_records(data) if t == 2]
    out = set()
    for t, p in image_records(data):
        if t == 4:
            idx = struct.unpack_from("<I", p, 1)[0]
            if idx < len(maps):
                out.add((maps[idx], p[21:]))
    return out


def cut_core(core, ranges):
    """The core's ELF header and notes, with one PT_LOAD per read range (in
    the original segment's place, flags kept) and the segments that carried
    no bytes (file mappings gcore leaves out) as they were."""
    with open(core, "rb") as f:
        data = f.read()
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    phdrs = [struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize) for i in range(phnum)]
    notes = [p for p in phdrs if p[0] == 4]
    loads = [p for p in phdrs if p[0] == 1]
    out_ph = []  # (type, flags, vaddr, filesz, memsz, align, bytes)
    for typ, flags, off, va, pa, fsz, msz, align in notes:
        out_ph.append((typ, flags, 0, fsz, 0, align, data[off:off + fsz]))
    for typ, flags, off, va, pa, fsz, msz, align in loads:
        if fsz == 0:
            out_ph.append((typ, flags, va, 0, msz, align, b""))
            continue
        for a, n in ranges:
            lo, hi = max(a, va), min(a + n, va + fsz)
            if lo < hi:
                out_ph.append((typ, flags, lo, hi - lo, hi - lo, 1,
                               data[off + lo - va:off + hi - va]))
    out_ph.sort(key=lambda p: (p[0] != 4, p[2]))
    head = bytearray(data[:64])
    struct.pack_into("<QQ", head, 32, 64, 0)  # e_phoff, e_shoff: no sections
    struct.pack_into("<HHHHHH", head, 52, 64, 56, len(out_ph), 0, 0, 0)
    body_off = 64 + 56 * len(out_ph)
    ph_bytes, body = bytearray(), bytearray()
    for typ, flags, va, fsz, msz, align, blob in out_ph:
        off = body_off + len(body) if blob else 0
        ph_bytes += struct.pack("<IIQQQQQQ", typ, flags, off, va, 0, fsz, msz, align)
        body += blob
    return bytes(head + ph_bytes + body)


def skeleton(path, wanted):
    """An ELF file cut to what the symbol layer reads (see the docstring)."""
    with open(path, "rb") as f:
        data = f.read()
    shoff, = struct.unpack_from("<Q", data, 40)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 58)
    shdrs = [list(struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize))
             for i in range(shnum)]
    strtab = shdrs[shstrndx]
    names = data[strtab[4]:strtab[4] + strtab[5]]

    def sname(sh):
        end = names.find(b"\0", sh[0])
        return names[sh[0]:end]

    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    out = bytearray(data[:64])
    out += data[phoff:phoff + phentsize * phnum]
    struct.pack_into("<Q", out, 32, 64)
    for sh in shdrs:
        keep = sh[1] in SYM_KEEP_TYPES or sname(sh) in SYM_KEEP_NAMES
        if not keep or sh[1] == 8:  # SHT_NOBITS
            sh[1] = 8 if sh[1] != 0 else 0
            sh[4] = 0
            continue
        blob = data[sh[4]:sh[4] + sh[5]]
        if sh[1] in (2, 11) and sh[9]:  # symbol tables: the wanted names first
            link = shdrs[sh[6]]
            strs = data[link[4]:link[4] + link[5]]
            ents = [blob[i:i + sh[9]] for i in range(0, len(blob), sh[9])]
            keep_ents = ents[:1 + SYM_EXTRA_ENTRIES]
            for e in ents[1 + SYM_EXTRA_ENTRIES:]:
                st_name, = struct.unpack_from("<I", e)
                nm = strs[st_name:strs.find(b"\0", st_name)].split(b"@")[0]
                if nm in wanted:
                    keep_ents.append(e)
            blob = b"".join(keep_ents)
            sh[5] = len(blob)
            sh[7] = min(sh[7], len(keep_ents))
        while len(out) % 8:
            out.append(0)
        sh[4] = len(out)
        out += blob
    while len(out) % 8:
        out.append(0)
    struct.pack_into("<Q", out, 40, len(out))
    for sh in shdrs:
        out += struct.pack("<IIQQQQIIQQ", *sh)
    return bytes(out)


def record(core, out, python, run=None):
    argv = [RECORD]
    if python.root != "/":
        argv += ["--sysroot", python.root]
    for r in run or ():
        argv += ["--run", r]
    subprocess.run(argv + [core, out], check=True, capture_output=True)
    with open(out, "rb") as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "seeds"))
    ap.add_argument("--minors", default="3.11,3.12,3.13,3.14,3.15")
    args = ap.parse_args()
    minors = args.minors.split(",")
    chosen = {}
    for p in pythons.PYTHONS:
        if not p.debug and p.minor in minors and p.minor not in chosen:
            chosen[p.minor] = p
    for sub in ("engine", "core", "sym"):
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="snarl-seeds-")
    try:
        for minor, py in sorted(chosen.items()):
            tag = minor.replace(".", "")
            wanted_syms = set()
            for sample in (FULL_SAMPLE,) + SMALL_SAMPLES:
                name = os.path.splitext(sample)[0]
                with Sample(py, sample, tmp) as s:
                    core = s.gcore(tmp)
                img = os.path.join(tmp, "img")
                if sample == FULL_SAMPLE:
                    data = record(core, img, py)
                    gz_write(os.path.join(args.out, "engine", "%s-%s-all.img.gz" % (tag, name)), data)
                    stacks = record(core, img, py, ["stacks"])
                    gz_write(os.path.join(args.out, "core", "%s-%s.core.gz" % (tag, name)),
                             cut_core(core, image_ranges(stacks)))
                    for path, sym in image_symbols(data):
                        wanted_syms.add(sym)
                    files = {p for p, _ in image_symbols(data)}
                else:
                    data = record(core, img, py, ["stacks", "task"])
                    gz_write(os.path.join(args.out, "engine", "%s-%s-views.img.gz" % (tag, name)),
                             data)
                os.unlink(core)
                print("%s %s: done" % (py.label, sample), flush=True)
            for path in sorted(files):
                # gcore names a chroot's files by their path on the host.
                local = path if os.path.exists(path) else py.host_path(path)
                if os.path.exists(local):
                    base = os.path.basename(path).split(".cpython")[0]
                    gz_write(os.path.join(args.out, "sym", "%s-%s.elf.gz" % (tag, base)),
                             skeleton(local, wanted_syms))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
