"""Checks snarl's built-in layout tables and the _Py_DebugOffsets positions it
reads against the real CPython headers on this machine, through probe
programs that print offsetof()/sizeof() of the C behind each field."""
import glob
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import pytest

import pythons

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB = os.path.join(ROOT, "build", "libsnarl.a")
DUMP_C = os.path.join(ROOT, "tests", "layout", "layout_dump.c")
PY_H = os.path.join(ROOT, "src", "py", "py.h")
# layout_dump reads these through libsnarl.a; an older library would make us
# check yesterday's tables.
LIB_SOURCES = [os.path.join(ROOT, "src", "py", f)
               for f in ("py.h", "py_tables.c", "py_debug_offsets.c")]
MINORS = (11, 12, 13, 14, 15)
PY_NONE = -1
# The Makefile's: layout_dump.c is held to the same standard as src/.
WARN = ["-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wstrict-prototypes",
        "-Wmissing-prototypes", "-Wno-unused-parameter", "-Wformat=2", "-Wvla"]

# py_layout members with no C counterpart to compare, and why.
SKIPPED_FIELDS = {
    "fr_instr_is_last": "snarl's flag: prev_instr (3.11, 3.12) rather than instr_ptr",
    "fr_stack_is_ptr": "snarl's flag: stackpointer (3.14+) rather than an int index",
    "stackref_tagged": "snarl's flag: frame slots are _PyStackRef (3.14+)",
    "long_lvtag": "snarl's flag: ints carry lv_tag (3.12+)",
    "managed": "snarl's enum of managed-dict schemes",
    "refcnt_split": "snarl's flag: immortal objects, the count in the low 32 bits (3.12+)",
    "heap_c_types": "snarl's flag: deque and the _asyncio types are heap types (3.12+)",
    "deque_left": "dequeobject is private to Modules/_collectionsmodule.c, in no header",
    "deque_right": "dequeobject is private to Modules/_collectionsmodule.c, in no header",
    "deque_leftindex": "dequeobject is private to Modules/_collectionsmodule.c, in no header",
    "deque_rightindex": "dequeobject is private to Modules/_collectionsmodule.c, in no header",
}
# Skipped because nothing uses them: checked to stay unused and unset.
UNUSED_FIELDS = ()

# Fields py_layout_from_debug_offsets sets besides those it reads from the
# table: the frame and thread-state sizes (interpreter_frame.size,
# thread_state.size) and the str data offsets it derives from
# unicode_object.asciiobject_size.
DERIVED_AT_RUN_TIME = ("fr_size", "ts_size", "str_compact_data", "str_legacy_data")

# The value a field has once the target's debug offsets are applied, where it
# differs from what the built-in table holds: the tables leave the embedded
# GIL absent and the thread-state size 0, the debug offsets give them.
RUNTIME_EXPRESSIONS = {
    "is_gil_embedded": "offsetof(PyInterpreterState, _gil)",
    "ts_size": "sizeof(PyThreadState)",
}


def builtin_expressions(minor):
    """py_layout field -> the C expression the built-in table must equal for
    this minor, or None when the version has no such thing (PY_NONE)."""
    old = minor <= 12  # _PyCFrame, f_code, prev_instr

    def since(first, expr, before=None):
        return expr if minor >= first else before

    return {
        "minor": "PY_MINOR_VERSION",
        "free_threaded": "SNARL_FREE_THREADED",
        # _PyRuntimeState
        "rt_interp_head": "offsetof(_PyRuntimeState, interpreters.head)",
        "rt_gil": None if minor > 11 else "offsetof(_PyRuntimeState, ceval.gil)",
        # PyInterpreterState
        "is_next": "offsetof(PyInterpreterState, next)",
        "is_id": "offsetof(PyInterpreterState, id)",
        "is_threads_head": "offsetof(PyInterpreterState, threads.head)",
        "is_gc": "offsetof(PyInterpreterState, gc)",
        "is_modules": since(12, "offsetof(PyInterpreterState, imports.modules)",
                            "offsetof(PyInterpreterState, modules)"),
        "is_sysdict": "offsetof(PyInterpreterState, sysdict)",
        "is_builtins": "offsetof(PyInterpreterState, builtins)",
        "is_gil_ptr": since(12, "offsetof(PyInterpreterState, ceval.gil)"),
        "is_gil_embedded": None,  # debug offsets only: RUNTIME_EXPRESSIONS
        # struct _gil_runtime_state
        "gil_last_holder": "offsetof(struct _gil_runtime_state, last_holder)",
        "gil_locked": "offsetof(struct _gil_runtime_state, locked)",
        # PyThreadState
        "ts_next": "offsetof(PyThreadState, next)",
        "ts_interp": "offsetof(PyThreadState, interp)",
        "ts_cframe": "offsetof(PyThreadState, cframe)" if old else None,
        "cf_current_frame": "offsetof(_PyCFrame, current_frame)" if old else None,
        "cf_previous": "offsetof(_PyCFrame, previous)" if old else None,
        "ts_current_frame": None if old else "offsetof(PyThreadState, current_frame)",
        "ts_dict": "offsetof(PyThreadState, dict)",
        "ts_thread_id": "offsetof(PyThreadState, thread_id)",
        "ts_native_id": "offsetof(PyThreadState, native_thread_id)",
        "ts_datastack_chunk": "offsetof(PyThreadState, datastack_chunk)",
        # The tables leave it 0; the debug offsets give it: RUNTIME_EXPRESSIONS.
        "ts_size": "0 /* thread_state.size comes from the debug offsets */",
        # _PyInterpreterFrame
        "fr_code": "offsetof(_PyInterpreterFrame, %s)" % ("f_code" if old else "f_executable"),
        "fr_previous": "offsetof(_PyInterpreterFrame, previous)",
        "fr_func": "offsetof(_PyInterpreterFrame, %s)" % since(12, "f_funcobj", "f_func"),
        "fr_globals": "offsetof(_PyInterpreterFrame, f_globals)",
        "fr_locals": "offsetof(_PyInterpreterFrame, f_locals)",
        "fr_instr": "offsetof(_PyInterpreterFrame, %s)" % ("prev_instr" if old else "instr_ptr"),
        "fr_stack": "offsetof(_PyInterpreterFrame, %s)" % since(14, "stackpointer", "stacktop"),
        "fr_owner": "offsetof(_PyInterpreterFrame, owner)",
        "fr_localsplus": "offsetof(_PyInterpreterFrame, localsplus)",
        "fr_size": "sizeof(_PyInterpreterFrame)",
        # The first owner that is not a Python frame: 3.11 marks entry frames
        # otherwise, so any owner past the frame-object one; then the C-stack
        # shim (3.12, 3.13); then the interpreter's entry frame (3.14+).
        "fr_owner_first_nonpy": (
            "FRAME_OWNED_BY_FRAME_OBJECT + 1" if minor == 11
            else since(14, "FRAME_OWNED_BY_INTERPRETER", "FRAME_OWNED_BY_CSTACK")),
        # PyCodeObject
        "co_flags": "offsetof(PyCodeObject, co_flags)",
        "co_argcount": "offsetof(PyCodeObject, co_argcount)",
        "co_firstlineno": "offsetof(PyCodeObject, co_firstlineno)",
        "co_nlocalsplus": "offsetof(PyCodeObject, co_nlocalsplus)",
        "co_localsplusnames": "offsetof(PyCodeObject, co_localsplusnames)",
        "co_localspluskinds": "offsetof(PyCodeObject, co_localspluskinds)",
        "co_filename": "offsetof(PyCodeObject, co_filename)",
        "co_name": "offsetof(PyCodeObject, co_name)",
        "co_qualname": "offsetof(PyCodeObject, co_qualname)",
        "co_linetable": "offsetof(PyCodeObject, co_linetable)",
        "co_code_adaptive": "offsetof(PyCodeObject, co_code_adaptive)",
        "co_framesize": since(12, "offsetof(PyCodeObject, co_framesize)"),
        "co_stacksize": "offsetof(PyCodeObject, co_stacksize)",
        # Objects and types
        "ob_refcnt": "offsetof(PyObject, ob_refcnt)",
        "ob_type": "offsetof(PyObject, ob_type)",
        "ob_size": "offsetof(PyVarObject, ob_size)",
        "tp_name": "offsetof(PyTypeObject, tp_name)",
        "tp_basicsize": "offsetof(PyTypeObject, tp_basicsize)",
        "tp_itemsize": "offsetof(PyTypeObject, tp_itemsize)",
        "tp_flags": "offsetof(PyTypeObject, tp_flags)",
        "tp_weaklistoffset": "offsetof(PyTypeObject, tp_weaklistoffset)",
        "tp_base": "offsetof(PyTypeObject, tp_base)",
        "tp_dictoffset": "offsetof(PyTypeObject, tp_dictoffset)",
        "tp_mro": "offsetof(PyTypeObject, tp_mro)",
        "ht_cached_keys": "offsetof(PyHeapTypeObject, ht_cached_keys)",
        # str
        "str_length": "offsetof(PyASCIIObject, length)",
        "str_state": "offsetof(PyASCIIObject, state)",
        "str_ascii_data": "sizeof(PyASCIIObject)",
        "str_compact_data": "sizeof(PyCompactUnicodeObject)",
        "str_legacy_data": "offsetof(PyUnicodeObject, data)",
        # int
        "long_size": since(12, "offsetof(PyLongObject, long_value.lv_tag)",
                           "offsetof(PyLongObject, ob_base.ob_size)"),
        "long_digits": since(12, "offsetof(PyLongObject, long_value.ob_digit)",
                             "offsetof(PyLongObject, ob_digit)"),
        # tuple, list, bytes
        "tuple_items": "offsetof(PyTupleObject, ob_item)",
        "list_items": "offsetof(PyListObject, ob_item)",
        "list_allocated": "offsetof(PyListObject, allocated)",
        "bytes_size": "offsetof(PyBytesObject, ob_base.ob_size)",
        "bytes_data": "offsetof(PyBytesObject, ob_sval)",
        # dict
        "dict_used": "offsetof(PyDictObject, ma_used)",
        "dict_keys": "offsetof(PyDictObject, ma_keys)",
        "dict_values": "offsetof(PyDictObject, ma_values)",
        "dict_values_array": "offsetof(PyDictValues, values)",
        # set
        "set_used": "offsetof(PySetObject, used)",
        "set_mask": "offsetof(PySetObject, mask)",
        "set_table": "offsetof(PySetObject, table)",
        # weakref, method, builtin method, cell, function, module
        "wr_object": "offsetof(PyWeakReference, wr_object)",
        "wr_callback": "offsetof(PyWeakReference, wr_callback)",
        "meth_func": "offsetof(PyMethodObject, im_func)",
        "meth_self": "offsetof(PyMethodObject, im_self)",
        "cfunc_self": "offsetof(PyCFunctionObject, m_self)",
        "cell_ref": "offsetof(PyCellObject, ob_ref)",
        "func_code": "offsetof(PyFunctionObject, func_code)",
        "func_qualname": "offsetof(PyFunctionObject, func_qualname)",
        "func_closure": "offsetof(PyFunctionObject, func_closure)",
        "mod_dict": "offsetof(PyModuleObject, md_dict)",
        # generators and coroutines
        "gen_frame_state": "offsetof(PyGenObject, gi_frame_state)",
        "gen_iframe": "offsetof(PyGenObject, gi_iframe)",
        "gen_name": "offsetof(PyGenObject, gi_name)",
        "gen_exc_state": "offsetof(PyGenObject, gi_exc_state)",
        "gen_code": "offsetof(PyGenObject, gi_code)" if minor == 11 else None,
        "fr_frame_obj": "offsetof(_PyInterpreterFrame, frame_obj)",
        # Past the last object field tp_traverse visits: vectorcall follows it.
        "func_fields_end": "offsetof(PyFunctionObject, vectorcall)",
        # gi_frame_state values (enum _framestate, pycore_frame.h). One state
        # covers yield and yield from before 3.13, and the locked yield-from
        # state is 3.15's: before, each repeats the state it splits from.
        "gs_created": "FRAME_CREATED",
        "gs_suspended": "FRAME_SUSPENDED",
        "gs_suspended_yf": since(13, "FRAME_SUSPENDED_YIELD_FROM", "FRAME_SUSPENDED"),
        "gs_suspended_yf_locked": since(15, "FRAME_SUSPENDED_YIELD_FROM_LOCKED",
                                        since(13, "FRAME_SUSPENDED_YIELD_FROM",
                                              "FRAME_SUSPENDED")),
        "gs_executing": "FRAME_EXECUTING",
        # The first state with no frame: FRAME_COMPLETED, gone in 3.15.
        "gs_cleared": since(15, "FRAME_CLEARED", "FRAME_COMPLETED"),
        # Opcodes of the RESUME that tells an await from a yield (opcode.h),
        # read on 3.11 and 3.12 only.
        "op_resume": "RESUME" if old else None,
        "op_resume_alt": "RESUME_QUICK" if minor == 11 else None,
        "op_instrumented_resume": "INSTRUMENTED_RESUME" if minor == 12 else None,
        # float
        "float_value": "offsetof(PyFloatObject, ob_fval)",
        # gc: generation0 points at generations[0]
        "gc_generation0": "offsetof(struct _gc_runtime_state, generation0)",
        "gc_permanent": "offsetof(struct _gc_runtime_state, permanent_generation)",
        "gc_generations": "NUM_GENERATIONS",
    }


# ---------------------------------------------------------------- discovery

@dataclass
class HeaderSet:
    label: str    # "3.13.18 (sid chroot)"
    minor: int
    version: str  # PY_VERSION from patchlevel.h
    include: str  # the directory holding Python.h
    chroot: str = None  # set when the headers live in a foreign root

    @property
    def id(self):
        return self.label.replace(" (", "-").replace(")", "").replace(" ", "-")


def _py_version(include):
    try:
        with open(os.path.join(include, "patchlevel.h")) as f:
            m = re.search(r'#define\s+PY_VERSION\s+"([^"]+)"', f.read())
    except OSError:
        return None
    return m.group(1) if m else None


def discover():
    """Returns (header sets to check, [(place, reason) skipped]). Looks in
    pyenv's builds, the host's /usr/include and the Debian sid chroot that
    scripts/provision-pythons.sh makes (${SNARL_CHROOT})."""
    found, skipped, seen = [], [], set()
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    places = [("pyenv", os.path.join(pyenv, "versions", "*", "include"), None),
              ("host", "/usr/include", None)]
    root = pythons.chroot_dir()
    if os.path.isdir(os.path.join(root, "usr", "include")):
        places.append(("sid chroot", os.path.join(root, "usr", "include"), root))
    else:
        skipped.append((root, "no sid chroot (scripts/provision-pythons.sh makes it)"))
    if not os.path.isdir(os.path.join(pyenv, "versions")):
        skipped.append((pyenv, "no pyenv versions"))
    for origin, pattern, chroot in places:
        for inc in sorted(glob.glob(os.path.join(pattern, "python3.*"))):
            m = re.fullmatch(r"python3\.(\d+)([a-z]*)", os.path.basename(inc))
            if not m or not os.path.isfile(os.path.join(inc, "Python.h")):
                continue
            minor, flags = int(m.group(1)), m.group(2)
            real = os.path.realpath(inc)
            if real in seen:
                continue
            seen.add(real)
            if minor not in MINORS:
                skipped.append((inc, "3.%d: snarl reads 3.11 to 3.15" % minor))
            elif "t" in flags:
                skipped.append((inc, "free-threaded headers; snarl reads default (GIL) builds"))
            elif flags not in ("", "d"):
                skipped.append((inc, "unknown ABI flags %r" % flags))
            elif not os.path.isfile(os.path.join(inc, "internal", "pycore_runtime.h")):
                skipped.append((inc, "no internal headers (internal/pycore_runtime.h)"))
            else:
                # Debug (Py_DEBUG) builds are default builds too, and snarl
                # reads them (the e2e matrix runs python3.Xd).
                version = _py_version(inc) or "3.%d.?" % minor
                label = "%s%s (%s)" % (version, " debug" if flags else "", origin)
                found.append(HeaderSet(label, minor, version, inc, chroot))
    found.sort(key=lambda h: (h.minor, [int(x) if x.isdigit() else 0
                                        for x in re.split(r"[.a-z]+", h.version)],
                              h.include.endswith("d")))
    return found, skipped


HEADER_SETS, SKIPPED_SETS = discover()


# ---------------------------------------------------------------- building

class ProbeError(Exception):
    pass


def _run(argv, what):
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise ProbeError("%s failed (exit %d): %s\n%s%s" % (
            what, p.returncode, " ".join(shlex.quote(a) for a in argv), p.stdout, p.stderr))
    return p.stdout


@pytest.fixture(scope="session")
def cc():
    argv = shlex.split(os.environ.get("CC", "cc"))
    if not argv or not shutil.which(argv[0]):
        pytest.skip("no C compiler (%s) to build the header probes" % " ".join(argv))
    return argv


@pytest.fixture(scope="session")
def workdir(layout_report):
    d = tempfile.mkdtemp(prefix="snarl-layout-")
    yield d
    # SNARL_LAYOUT_KEEP=1 keeps the generated probes for a look.
    if os.environ.get("SNARL_LAYOUT_KEEP"):
        layout_report.append("probes kept in %s" % d)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def layout_dump(cc, workdir):
    if not os.path.isfile(LIB):
        pytest.fail("build/libsnarl.a is missing: run make first")
    stale = [s for s in LIB_SOURCES if os.path.getmtime(s) > os.path.getmtime(LIB)]
    if stale:
        pytest.fail("build/libsnarl.a is older than %s: run make first"
                    % ", ".join(os.path.relpath(s, ROOT) for s in stale))
    exe = os.path.join(workdir, "layout_dump")
    try:
        _run(cc + ["-std=c11", "-D_GNU_SOURCE"] + WARN +
             ["-I", os.path.join(ROOT, "src"), "-o", exe, DUMP_C, LIB, "-lelf"],
             "building tests/layout/layout_dump.c")
    except ProbeError as e:
        pytest.fail(str(e))
    return exe


def _parse_dump(text):
    fields, dbg = {}, []
    for line in text.splitlines():
        parts = line.split()
        if parts[0] == "dbg":
            path, pos, field = parts[1], int(parts[2]), parts[3]
            dbg.append((path, pos, None if field == "-" else field))
        else:
            fields[parts[0]] = int(parts[1])
    return fields, dbg


@pytest.fixture(scope="session")
def dumps(layout_dump):
    """minor -> (built-in fields, [(debug-offsets path, position, field)])"""
    out = {}
    for minor in MINORS:
        out[minor] = _parse_dump(_run([layout_dump, str(minor)], "layout_dump %d" % minor))
    return out


def py_layout_members():
    with open(PY_H) as f:
        text = f.read()
    body = re.search(r"typedef struct py_layout \{(.*?)\} py_layout;", text, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    names = []
    for decl in filter(None, (d.strip() for d in body.split(";"))):
        declarators = re.match(r"(?:const\s+)?\w+\s+(.*)$", decl, re.S).group(1)
        names += [n.strip() for n in declarators.split(",")]
    return names


# The headers each probe includes, when the version has them (__has_include):
# the frame and generator structs moved to pycore_interpframe_structs.h in
# 3.14, the GIL state lived in pycore_gil.h before, the debug offsets have
# their own header since 3.14. Python.h does not include opcode.h.
PROBE_INCLUDES = """\
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include <opcode.h>
#include <internal/pycore_runtime.h>
#include <internal/pycore_interp.h>
#include <internal/pycore_frame.h>
#if __has_include(<internal/pycore_interpframe_structs.h>)
#include <internal/pycore_interpframe_structs.h>
#endif
#include <internal/pycore_code.h>
#include <internal/pycore_dict.h>
#include <internal/pycore_gc.h>
#include <internal/pycore_genobject.h>
#include <internal/pycore_moduleobject.h>
#if __has_include(<internal/pycore_gil.h>)
#include <internal/pycore_gil.h>
#endif
#if __has_include(<internal/pycore_tstate.h>)
#include <internal/pycore_tstate.h>
#endif
#if __has_include(<internal/pycore_debug_offsets.h>)
#include <internal/pycore_debug_offsets.h>
#endif
#ifdef Py_GIL_DISABLED
#define SNARL_FREE_THREADED 1
#else
#define SNARL_FREE_THREADED 0
#endif
"""


@dataclass
class Probe:
    fields: dict    # field -> header value (PY_NONE when the version has none)
    runtime: dict   # field -> header value of RUNTIME_EXPRESSIONS
    dbg: dict       # _Py_DebugOffsets member path -> offsetof / sizeof
    table: str      # file holding the header's initialized _Py_DebugOffsets, or None
    exprs: dict     # field -> C expression


class Prober:
    """Compiles and runs one probe per header set, once."""

    def __init__(self, cc, workdir, dumps):
        self.cc, self.workdir, self.dumps = cc, workdir, dumps
        self.cache = {}

    def get(self, hs):
        if hs.include not in self.cache:
            try:
                self.cache[hs.include] = self._probe(hs)
            except ProbeError as e:
                self.cache[hs.include] = e
        return self.cache[hs.include]

    def _cflags(self, hs, d):
        flags = ["-DPy_BUILD_CORE=1", "-I", hs.include]
        if hs.chroot:
            # The chroot's pyconfig.h is reached as <TRIPLET/python3.X/pyconfig.h>;
            # its /usr/include as a whole would shadow the host's libc headers.
            shim = os.path.join(d, "shim")
            base = os.path.basename(hs.include)
            for cfg in glob.glob(os.path.join(hs.chroot, "usr", "include", "*", base,
                                              "pyconfig.h")):
                triplet = os.path.basename(os.path.dirname(os.path.dirname(cfg)))
                os.makedirs(os.path.join(shim, triplet), exist_ok=True)
                link = os.path.join(shim, triplet, base)
                if not os.path.lexists(link):
                    os.symlink(os.path.dirname(cfg), link)
            flags += ["-I", shim]
        return flags

    def _debug_offsets_init(self, hs, d, cflags):
        """The header's initializer of _Py_DebugOffsets, as C text."""
        internal = os.path.join(hs.include, "internal")
        for name in glob.glob(os.path.join(internal, "*.h")):
            with open(name, errors="replace") as f:
                if "#define _Py_DebugOffsets_INIT" in f.read():
                    return '_Py_DebugOffsets_INIT("xdebugpy")'
        # 3.13 spells it out inside _PyRuntimeState_INIT, whose other
        # members need libpython to link: take the debug_offsets part from
        # the preprocessed initializer.
        src = os.path.join(d, "init.c")
        with open(src, "w") as f:
            f.write(PROBE_INCLUDES + "#include <internal/pycore_ceval.h>\n"
                    "#include <internal/pycore_runtime_init.h>\n"
                    'SNARL_BEGIN _PyRuntimeState_INIT(snarl_runtime, "xdebugpy") SNARL_END\n')
        text = _run(self.cc + ["-E", "-P"] + cflags + [src], "preprocessing %s" % hs.include)
        body = text[text.rfind("SNARL_BEGIN"):]
        m = re.search(r"\.debug_offsets\s*=\s*\{", body)
        if not m:
            raise ProbeError("no .debug_offsets initializer in _PyRuntimeState_INIT of %s"
                             % hs.include)
        depth, start = 0, m.end() - 1
        for i in range(start, len(body)):
            depth += {"{": 1, "}": -1}.get(body[i], 0)
            if depth == 0:
                return body[start:i + 1]
        raise ProbeError("unbalanced .debug_offsets initializer in %s" % hs.include)

    def _probe(self, hs):
        d = os.path.join(self.workdir, hs.id)
        os.makedirs(d, exist_ok=True)
        cflags = self._cflags(hs, d)
        exprs = {f: e for f, e in builtin_expressions(hs.minor).items()
                 if f not in SKIPPED_FIELDS}
        lines = []  # (kind, name, C expression)
        lines += [("L", f, e) for f, e in exprs.items() if e is not None]
        has_dbg = hs.minor >= 13
        if has_dbg:
            lines += [("R", f, e) for f, e in RUNTIME_EXPRESSIONS.items()]
            for path, _, _ in self.dumps[hs.minor][1]:
                if path == "sizeof":
                    lines.append(("D", path, "sizeof(_Py_DebugOffsets)"))
                elif re.fullmatch(r"\w+(\.\w+)*", path):
                    lines.append(("D", path, "offsetof(_Py_DebugOffsets, %s)" % path))
        src = [PROBE_INCLUDES]
        if has_dbg:
            src.append("static const _Py_DebugOffsets snarl_dbg = %s;\n"
                       % self._debug_offsets_init(hs, d, cflags))
        init_line = "".join(src).count("\n") if has_dbg else None
        src.append("int main(int argc, char **argv) {\n")
        first = "".join(src).count("\n") + 1
        for kind, name, expr in lines:
            src.append('    printf("%s %s %%lld\\n", (long long)(%s));\n' % (kind, name, expr))
        if has_dbg:
            src.append("    FILE *f = argc > 1 ? fopen(argv[1], \"wb\") : NULL;\n"
                       "    if (!f || fwrite(&snarl_dbg, sizeof snarl_dbg, 1, f) != 1) {\n"
                       "        return 1;\n"
                       "    }\n"
                       "    fclose(f);\n")
        src.append("    (void)argc; (void)argv;\n    return 0;\n}\n")
        path, exe = os.path.join(d, "probe.c"), os.path.join(d, "probe")
        with open(path, "w") as f:
            f.write("".join(src))
        p = subprocess.run(self.cc + cflags + ["-o", exe, path, "-w"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise ProbeError(self._explain(hs, p.stderr, path, first, lines, init_line))
        table = os.path.join(d, "debug_offsets.bin") if has_dbg else None
        out = _run([exe] + ([table] if table else []), "running the probe for %s" % hs.include)
        values = {"L": {}, "R": {}, "D": {}}
        for line in out.splitlines():
            kind, name, value = line.split()
            values[kind][name] = int(value)
        fields = {f: (values["L"][f] if e is not None else PY_NONE) for f, e in exprs.items()}
        return Probe(fields, values["R"], values["D"], table, exprs)

    @staticmethod
    def _explain(hs, stderr, path, first, lines, init_line):
        """Names the expressions the compiler rejected."""
        bad, other = [], []
        for m in re.finditer(r"(?m)^(.*?):(\d+):\d+: error: (.*)$", stderr):
            i = int(m.group(2)) - first
            if m.group(1) == path and 0 <= i < len(lines):
                kind, name, expr = lines[i]
                bad.append("  %s: %s -> %s" % (name, expr, m.group(3)))
            elif m.group(1) == path and int(m.group(2)) == init_line:
                other.append("  in the headers' own _Py_DebugOffsets initializer: "
                             + m.group(3))
            else:
                other.append("  " + m.group(0))
        head = "the probe for %s (%s) does not compile" % (hs.label, hs.include)
        if not bad and not other:
            return head + ":\n" + stderr[-4000:]
        if bad:
            head += "; C expressions the headers reject:\n" + "\n".join(sorted(set(bad)))
        if other:
            head += "\nother errors:\n" + "\n".join(other[:20])
        return head


@pytest.fixture(scope="session")
def prober(cc, workdir, dumps):
    return Prober(cc, workdir, dumps)


@pytest.fixture(scope="session", autouse=True)
def _report_discovery(layout_report):
    for hs in HEADER_SETS:
        layout_report.append("found:   %-26s %s" % (hs.label, hs.include))
    for place, reason in SKIPPED_SETS:
        layout_report.append("skipped: %s: %s" % (place, reason))
    for minor in MINORS:
        if not any(h.minor == minor for h in HEADER_SETS):
            layout_report.append("not checked: 3.%d (no headers found)" % minor)


def _note(layout_report, line):
    print(line)
    layout_report.append(line)


def _get_probe(prober, hs):
    probe = prober.get(hs)
    if isinstance(probe, ProbeError):
        pytest.fail(str(probe), pytrace=False)
    return probe


def header_set_params():
    if HEADER_SETS:
        return [pytest.param(h, id=h.id) for h in HEADER_SETS]
    return [pytest.param(None, id="no-headers")]


def _need(hs):
    if hs is None:
        looked = "; ".join("%s: %s" % s for s in SKIPPED_SETS) or "nothing else found"
        pytest.skip("no CPython 3.11-3.15 headers with internal/ found (%s)" % looked)


def _debug_fields(dbg):
    return [f for _, _, f in dbg if f]


# ---------------------------------------------------------------- tests

def test_every_field_is_dumped_and_mapped(dumps):
    """layout_dump prints every py_layout member, every member is compared or
    listed as skipped, and every debug-offset position is named."""
    members = py_layout_members()
    problems = []
    for minor in MINORS:
        fields, dbg = dumps[minor]
        missing = [m for m in members if m not in fields]
        if missing:
            problems.append("3.%d: layout_dump.c does not print %s" % (minor, ", ".join(missing)))
        exprs = builtin_expressions(minor)
        unmapped = [m for m in members if m not in exprs and m not in SKIPPED_FIELDS]
        if unmapped:
            problems.append("3.%d: no C expression in test_layout.py for %s (add one, or list "
                            "it in SKIPPED_FIELDS with the reason)" % (minor, ", ".join(unmapped)))
        for path, pos, field in dbg:
            if path == "?":
                problems.append("3.%d: the debug-offset position %d fills a py_layout field "
                                "with no _Py_DebugOffsets name (dbg_paths in "
                                "src/py/py_debug_offsets.c)" % (minor, pos))
            elif field and field not in members:
                problems.append("3.%d: debug offset %s names %s, not a py_layout member"
                                % (minor, path, field))
        if minor >= 13 and not dbg:
            problems.append("3.%d: no debug-offset table" % minor)
        problems += ["3.%d: %s is set to %d; give it a C expression in test_layout.py"
                     % (minor, f, fields[f]) for f in UNUSED_FIELDS if fields.get(f)]
    problems += ["SKIPPED_FIELDS lists %s, not a py_layout member" % f
                 for f in SKIPPED_FIELDS if f not in members]
    for path in glob.glob(os.path.join(ROOT, "src", "**", "*.c"), recursive=True):
        with open(path, errors="replace") as f:
            text = f.read()
        problems += ["%s now reads %s; give it a C expression in test_layout.py"
                     % (os.path.relpath(path, ROOT), u) for u in UNUSED_FIELDS
                     if re.search(r"\b%s\b" % u, text)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("hs", header_set_params())
def test_builtin_table_matches_headers(hs, dumps, prober, layout_report):
    _need(hs)
    probe = _get_probe(prober, hs)
    table = dumps[hs.minor][0]
    overridden = set(_debug_fields(dumps[hs.minor][1])) | set(DERIVED_AT_RUN_TIME)
    siblings = [s for s in HEADER_SETS if s.minor == hs.minor and s is not hs]
    failures, infos = [], []
    for field, header in probe.fields.items():
        have = table[field]
        if have == header:
            continue
        expr = probe.exprs[field] or "(none in 3.%d: PY_NONE)" % hs.minor
        where = "%s = %d in %s (%s), built-in py_layout_3%d.%s = %d" % (
            expr, header, hs.include, hs.version, hs.minor, field, have)
        others = [(s, prober.get(s)) for s in siblings]
        others = [(s, p.fields[field]) for s, p in others if not isinstance(p, ProbeError)]
        documented = [s for s, v in others if v == have]
        if field in overridden and documented:
            infos.append("info: 3.%d %s differs between 3.%d header sets and is read from "
                         "the target's debug offsets: %s; the table documents %s"
                         % (hs.minor, field, hs.minor, where,
                            ", ".join(s.label for s in documented)))
        else:
            failures.append("%s: %s" % (field, where))
    for line in infos:
        _note(layout_report, line)
    absent = sum(1 for e in probe.exprs.values() if e is None)
    _note(layout_report, "checked: %-26s %d fields (%d C expressions, %d absent: PY_NONE), "
          "%d mismatched, %d notes" % (hs.label, len(probe.fields),
                                                     len(probe.fields) - absent, absent,
                                                     len(failures), len(infos)))
    assert not failures, ("built-in layout table disagrees with the %s headers:\n  " % hs.label
                          + "\n  ".join(failures))


@pytest.mark.parametrize("hs", header_set_params())
def test_debug_offset_positions_match_headers(hs, dumps, prober, layout_report):
    _need(hs)
    if hs.minor < 13:
        pytest.skip("3.%d has no _Py_DebugOffsets" % hs.minor)
    probe = _get_probe(prober, hs)
    failures = []
    dbg = dumps[hs.minor][1]
    for path, pos, field in dbg:
        header = probe.dbg.get(path)
        what = "sizeof(_Py_DebugOffsets)" if path == "sizeof" else \
            "offsetof(_Py_DebugOffsets, %s)" % path
        used = "bytes snarl reads" if path == "sizeof" else \
            "position snarl reads%s" % (" for " + field if field else "")
        if path == "?":
            failures.append("position %d: no _Py_DebugOffsets name to check it against "
                            "(dbg_paths in src/py/py_debug_offsets.c)" % pos)
        elif header is None:
            failures.append("%s: no such member in %s" % (path, hs.include))
        elif header != pos:
            failures.append("%s: %s = %d in %s (%s), %s = %d" % (
                path, what, header, hs.include, hs.version, used, pos))
    # Every struct whose fields are read must have its size checked too.
    sizes = {p for p, _, f in dbg if p.endswith(".size")}
    for path, _, field in dbg:
        if field and path.split(".")[0] + ".size" not in sizes:
            failures.append("%s: read without checking %s.size" % (path, path.split(".")[0]))
    _note(layout_report, "checked: %-26s %d debug-offset positions, %d mismatched"
          % (hs.label, len(dbg), len(failures)))
    assert not failures, ("debug-offset positions disagree with the %s headers:\n  " % hs.label
                          + "\n  ".join(failures))


@pytest.mark.parametrize("hs", header_set_params())
def test_debug_offsets_give_header_layout(hs, dumps, prober, layout_dump, layout_report):
    """Feeds the header's own initialized _Py_DebugOffsets to snarl's override
    code; every field it sets must then equal the headers'."""
    _need(hs)
    if hs.minor < 13:
        pytest.skip("3.%d has no _Py_DebugOffsets" % hs.minor)
    probe = _get_probe(prober, hs)
    p = subprocess.run([layout_dump, str(hs.minor), probe.table], capture_output=True, text=True)
    assert p.returncode == 0, ("snarl rejected the debug offsets of the %s headers: %s"
                               % (hs.label, p.stderr.strip()))
    got, _ = _parse_dump(p.stdout)
    assert got.get("debug_offsets_applied") == 1
    checked = _debug_fields(dumps[hs.minor][1]) + list(DERIVED_AT_RUN_TIME)
    failures = []
    for field in checked:
        if field in RUNTIME_EXPRESSIONS:
            expr, header = RUNTIME_EXPRESSIONS[field], probe.runtime[field]
        else:
            expr, header = probe.exprs[field], probe.fields[field]
        if got[field] != header:
            failures.append("%s: %s = %d in %s (%s), after the debug offsets snarl has %d"
                            % (field, expr, header, hs.include, hs.version, got[field]))
    _note(layout_report, "checked: %-26s %d fields through its own debug offsets, %d mismatched"
          % (hs.label, len(checked), len(failures)))
    assert not failures, ("layout after applying the %s debug offsets disagrees with its "
                          "headers:\n  " % hs.label + "\n  ".join(failures))
