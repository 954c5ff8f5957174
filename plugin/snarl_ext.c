/* _snarl: the bridge between a debugger's embedded Python (gdb, lldb) and the
 * engine. A limited-API (abi3) extension, so one build loads in any CPython
 * 3.11+ a debugger embeds. run() attaches a session to the debugger through
 * snarl_host (memory, mappings and threads come from Python callables the
 * front end supplies), runs one command and returns the engine's rendered
 * text or JSON. It analyses and renders nothing itself; the gdb and lldb
 * scripts parse commands and print. The only file of snarl that includes
 * Python.h. */
#define Py_LIMITED_API 0x030b0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "../src/snarl.h"

/* Bytes per read asked of the debugger (128 KiB): a call into its Python
 * costs microseconds whatever the size, and a remote round trip far more,
 * while copying 128 KiB costs little. On a 100,000-task core, 64 KiB blocks
 * took twice the calls and 256 KiB blocks more page-by-page retries at the
 * edges of mappings, for no gain. */
#define BRIDGE_BLOCK_SIZE (128u * 1024u)

static PyObject *bridge_error; /* _snarl.Error */

typedef struct bridge {
    PyObject *read;     /* read(addr, size) -> bytes-like of size bytes, or None */
    PyObject *mappings; /* iterable of (start, end, offset, path) */
    PyObject *threads;  /* iterable of thread ids */
    /* The first exception a callback raised (Ctrl-C, or a bug in the front
     * end): every later read fails fast, and run() raises it afterwards. */
    PyObject *exc_type, *exc_value, *exc_tb;
    char *out; /* the rendered output */
    size_t out_len, out_cap;
    int out_failed;
} bridge;

static void bridge_keep_exception(bridge *b) {
    if (!b->exc_type) {
        PyErr_Fetch(&b->exc_type, &b->exc_value, &b->exc_tb);
    } else {
        PyErr_Clear();
    }
}

static int bridge_read(void *ctx, uint64_t addr, size_t len, void *dst) {
    bridge *b = ctx;
    if (b->exc_type || len > (size_t)PY_SSIZE_T_MAX) {
        return -1;
    }
    PyObject *r = PyObject_CallFunction(b->read, "Kn", (unsigned long long)addr, (Py_ssize_t)len);
    if (!r) {
        bridge_keep_exception(b);
        return -1;
    }
    int rc = -1;
    Py_buffer view;
    if (r == Py_None) {
        rc = -1; /* the debugger could not read there */
    } else if (PyObject_GetBuffer(r, &view, PyBUF_SIMPLE) == 0) {
        if ((size_t)view.len == len) {
            memcpy(dst, view.buf, len);
            rc = 0;
        }
        PyBuffer_Release(&view);
    } else {
        bridge_keep_exception(b); /* not bytes: a bug in the front end */
    }
    Py_DECREF(r);
    return rc;
}

/* A path as bytes: str paths through the file-system encoding (so that a
 * name that is not UTF-8 survives as gdb and lldb pass it), bytes as is. */
static PyObject *bridge_path_bytes(PyObject *path) {
    if (PyBytes_Check(path)) {
        Py_INCREF(path);
        return path;
    }
    if (PyUnicode_Check(path)) {
        return PyUnicode_EncodeFSDefault(path);
    }
    PyErr_SetString(PyExc_TypeError, "a mapping's path must be str or bytes");
    return NULL;
}

static int bridge_mappings(void *ctx, snarl_mapping_cb cb, void *cb_ctx) {
    bridge *b = ctx;
    PyObject *it = PyObject_GetIter(b->mappings);
    if (!it) {
        bridge_keep_exception(b);
        return -1;
    }
    int rc = 0;
    PyObject *item;
    while (rc == 0 && (item = PyIter_Next(it)) != NULL) {
        unsigned long long start, end, offset;
        PyObject *path, *raw = NULL;
        if (!PyArg_ParseTuple(item, "KKKO", &start, &end, &offset, &path) ||
            !(raw = bridge_path_bytes(path))) {
            rc = -1;
        } else {
            snarl_mapping m = {start, end, offset, PyBytes_AsString(raw)};
            rc = m.path && cb(cb_ctx, &m) == 0 ? 0 : -1;
        }
        Py_XDECREF(raw);
        Py_DECREF(item);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        bridge_keep_exception(b);
        rc = -1;
    }
    return rc;
}

static int bridge_threads(void *ctx, int (*cb)(void *, int64_t), void *cb_ctx) {
    bridge *b = ctx;
    PyObject *it = PyObject_GetIter(b->threads);
    if (!it) {
        bridge_keep_exception(b);
        return -1;
    }
    int rc = 0;
    PyObject *item;
    while (rc == 0 && (item = PyIter_Next(it)) != NULL) {
        long long tid = PyLong_AsLongLong(item);
        Py_DECREF(item);
        rc = tid == -1 && PyErr_Occurred() ? -1 : cb(cb_ctx, (int64_t)tid);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        bridge_keep_exception(b);
        rc = -1;
    }
    return rc;
}

static int bridge_sink(void *ctx, const char *data, size_t len) {
    bridge *b = ctx;
    if (len > b->out_cap - b->out_len) {
        size_t cap = b->out_cap ? b->out_cap : 65536;
        while (len > cap - b->out_len) {
            if (cap > SIZE_MAX / 2) {
                b->out_failed = 1;
                return -1;
            }
            cap *= 2;
        }
        char *grown = PyMem_Realloc(b->out, cap);
        if (!grown) {
            b->out_failed = 1;
            return -1;
        }
        b->out = grown;
        b->out_cap = cap;
    }
    memcpy(b->out + b->out_len, data, len);
    b->out_len += len;
    return 0;
}

static int bridge_format(const char *name, snarl_format *out) {
    static const struct {
        const char *name;
        snarl_format format;
    } formats[] = {{"text", SNARL_FORMAT_TEXT},
                   {"json", SNARL_FORMAT_JSON},
                   {"dot", SNARL_FORMAT_DOT},
                   {"mermaid", SNARL_FORMAT_MERMAID}};
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++) {
        if (strcmp(name, formats[i].name) == 0) {
            *out = formats[i].format;
            return 1;
        }
    }
    return 0;
}

/* Raises _snarl.Error(message, hint, name) from the session's error. */
static void bridge_raise(const snarl_session *s) {
    PyObject *args = Py_BuildValue("(sss)", snarl_error(s), snarl_hint(s), snarl_error_name(s));
    if (args) {
        PyErr_SetObject(bridge_error, args);
        Py_DECREF(args);
    }
}

static PyObject *bridge_run(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"read",        "mappings", "threads", "pid",    "is_core", "stopped",
                               "executable",  "sysroot",  "command", "format", "task_id", "all",
                               "all_objects", "fail_on",  "local",   NULL};
    bridge b;
    memset(&b, 0, sizeof b);
    int pid = 0, is_core = 0, stopped = 1, all = 0, all_objects = 0, local = 0;
    const char *executable = NULL, *sysroot = NULL, *command = "check", *format = "text";
    const char *task_id = NULL, *fail_on = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOOippzzsszppzp", keywords, &b.read,
                                     &b.mappings, &b.threads, &pid, &is_core, &stopped, &executable,
                                     &sysroot, &command, &format, &task_id, &all, &all_objects,
                                     &fail_on, &local)) {
        return NULL;
    }
    if (!b.read || !PyCallable_Check(b.read) || !b.mappings || !b.threads) {
        PyErr_SetString(PyExc_TypeError,
                        "run() needs read (a callable), mappings and threads (iterables)");
        return NULL;
    }
    snarl_request req = {.command = command,
                         .task_id = task_id,
                         .all = all,
                         .all_objects = all_objects,
                         .fail_on = fail_on};
    if (!bridge_format(format, &req.format)) {
        PyErr_Format(PyExc_ValueError, "unknown format '%s'", format);
        return NULL;
    }
    snarl_options opt = {.sysroot = sysroot && *sysroot ? sysroot : NULL};
    snarl_session *s = snarl_open(&opt);
    if (!s) {
        return PyErr_NoMemory();
    }
    snarl_host host = {.ctx = &b,
                       .read = bridge_read,
                       .mappings = bridge_mappings,
                       .threads = bridge_threads,
                       .pid = pid,
                       .is_core = is_core,
                       .executable = executable && *executable ? executable : NULL,
                       .stopped = stopped,
                       .block_size = BRIDGE_BLOCK_SIZE,
                       .local = local};
    int status = SNARL_STATUS_ERROR;
    if (snarl_attach_host(s, &host) == 0) {
        status = snarl_run(s, &req, bridge_sink, &b);
    }
    PyObject *result = NULL;
    if (b.exc_type) {
        /* The callback's own exception explains the failure best. */
        PyErr_Restore(b.exc_type, b.exc_value, b.exc_tb);
    } else if (b.out_failed) {
        PyErr_NoMemory();
    } else if (status == SNARL_STATUS_ERROR) {
        bridge_raise(s);
    } else {
        /* The engine writes UTF-8; a stray byte from the target must not
         * lose the whole report. */
        result = Py_BuildValue(
            "(iN)", status,
            PyUnicode_DecodeUTF8(b.out ? b.out : "", (Py_ssize_t)b.out_len, "replace"));
    }
    PyMem_Free(b.out);
    snarl_close(s);
    return result;
}

PyDoc_STRVAR(bridge_run_doc,
             "run(*, read, mappings, threads, pid=0, is_core=False, stopped=True,\n"
             "    executable=None, sysroot=None, command='check', format='text',\n"
             "    task_id=None, all=False, all_objects=False, fail_on=None, local=False)\n"
             "    -> (status, output)\n"
             "\n"
             "Analyses the debugger's target with one snarl command. read(addr, size)\n"
             "returns size bytes or None; mappings yields (start, end, offset, path);\n"
             "threads yields thread ids. status is 0 (nothing found) or 1 (check found\n"
             "something); an analysis that fails raises Error(message, hint, name).\n"
             "local: a live target on this machine (pid is ours to look up), so that\n"
             "one that died while read is reported as exited.\n"
             "An exception raised by a callback stops the analysis and is re-raised.");

static PyMethodDef bridge_methods[] = {
    {"run", (PyCFunction)(void (*)(void))bridge_run, METH_VARARGS | METH_KEYWORDS, bridge_run_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef bridge_module = {
    PyModuleDef_HEAD_INIT,
    "_snarl",
    "snarl's engine for the gdb and lldb commands (see plugin/README.md).",
    -1,
    bridge_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__snarl(void);

PyMODINIT_FUNC PyInit__snarl(void) {
    PyObject *m = PyModule_Create(&bridge_module);
    if (!m) {
        return NULL;
    }
    if (!bridge_error) {
        bridge_error = PyErr_NewException("_snarl.Error", PyExc_RuntimeError, NULL);
    }
    if (!bridge_error || PyModule_AddObjectRef(m, "Error", bridge_error) < 0 ||
        PyModule_AddStringConstant(m, "SCHEMA", SNARL_SCHEMA) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
