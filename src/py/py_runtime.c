/* Finding the Python runtime in a target, detecting its version, and walking
 * interpreters and thread states (with which thread holds the GIL and the
 * threading module's name for each). */
#include "py.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void py_code_cache_free(py_target *t);

static void py_version_string(uint32_t hex, char *buf, size_t cap) {
    unsigned major = hex >> 24, minor = (hex >> 16) & 0xff, micro = (hex >> 8) & 0xff;
    unsigned level = (hex >> 4) & 0xf, serial = hex & 0xf;
    const char *lv = level == 0xa ? "a" : level == 0xb ? "b" : level == 0xc ? "rc" : "";
    if (level == 0xf) {
        snprintf(buf, cap, "%u.%u.%u", major, minor, micro);
    } else {
        snprintf(buf, cap, "%u.%u.%u%s%u", major, minor, micro, lv, serial);
    }
}

/* Reads a value from the target, or from the file on disk when the target
 * lacks the page (cores leave out read-only file mappings). */
static err_t py_read_static(py_target *t, const sym_hit *h, void *dst, size_t n) {
    if (mem_read(t->m, h->addr, n, dst) == ERR_OK) {
        return ERR_OK;
    }
    return sym_read_file(t->sym, h->file, h->addr, dst, n);
}

/* Python 3.10 and older have no Py_Version; name the version from the file. */
static bool py_version_from_name(const sym_file *f, char *buf, size_t cap) {
    const char *p = f ? strstr(f->path, "python") : NULL;
    while (p) {
        unsigned major, minor;
        if (sscanf(p, "python%u.%u", &major, &minor) == 2) {
            snprintf(buf, cap, "%u.%u", major, minor);
            return true;
        }
        p = strstr(p + 1, "python");
    }
    return false;
}

static const struct {
    const char *name;
    size_t off;
} py_type_syms[] = {
    {"PyCode_Type", offsetof(py_types, code)},
    {"PyUnicode_Type", offsetof(py_types, str)},
    {"PyLong_Type", offsetof(py_types, long_)},
    {"PyBool_Type", offsetof(py_types, bool_)},
    {"PyTuple_Type", offsetof(py_types, tuple)},
    {"PyList_Type", offsetof(py_types, list)},
    {"PyDict_Type", offsetof(py_types, dict)},
    {"PySet_Type", offsetof(py_types, set)},
    {"PyFrozenSet_Type", offsetof(py_types, frozenset)},
    {"PyBytes_Type", offsetof(py_types, bytes)},
    {"PyFloat_Type", offsetof(py_types, float_)},
    {"PyCoro_Type", offsetof(py_types, coro)},
    {"PyGen_Type", offsetof(py_types, gen)},
    {"PyAsyncGen_Type", offsetof(py_types, asyncgen)},
    {"PyMethod_Type", offsetof(py_types, method)},
    {"PyCFunction_Type", offsetof(py_types, cfunction)},
    {"PyCell_Type", offsetof(py_types, cell)},
    {"PyFunction_Type", offsetof(py_types, function)},
    {"PyModule_Type", offsetof(py_types, module)},
    {"PyType_Type", offsetof(py_types, type)},
    {"_PyWeakref_RefType", offsetof(py_types, weakref)},
    {"_Py_NoneStruct", offsetof(py_types, none)},
    {"_Py_TrueStruct", offsetof(py_types, true_)},
    {"_Py_FalseStruct", offsetof(py_types, false_)},
};

/* 3.11 and 3.12 carry no cookie: check that the first interpreter's first
 * thread points back at it. */
static err_t py_check_runtime(py_target *t) {
    uint64_t interp, ts, back;
    if (mem_read_u64(t->m, t->runtime + (uint64_t)t->L.rt_interp_head, &interp) != ERR_OK ||
        interp == 0) {
        return err_set(t->err, ERR_NOT_PYTHON,
                       "the Python runtime at 0x%llx has no interpreter (not initialized yet, "
                       "or already finalized)",
                       (unsigned long long)t->runtime);
    }
    if (mem_read_u64(t->m, interp + (uint64_t)t->L.is_threads_head, &ts) != ERR_OK) {
        return err_set(t->err, ERR_CORE, "the main interpreter at 0x%llx is not readable",
                       (unsigned long long)interp);
    }
    if (ts != 0 && (mem_read_u64(t->m, ts + (uint64_t)t->L.ts_interp, &back) != ERR_OK ||
                    back != interp)) {
        return err_set(t->err, ERR_CORRUPT,
                       "thread state 0x%llx does not point back to its interpreter 0x%llx: "
                       "the layout for Python %s does not match this build",
                       (unsigned long long)ts, (unsigned long long)interp, t->version);
    }
    return ERR_OK;
}

err_t py_open(py_target *t, mem *m, sym_table *sym, err_record *err) {
    memset(t, 0, sizeof *t);
    t->m = m;
    t->sym = sym;
    t->err = err;
    sym_hit rt;
    if (!sym_lookup(sym, NULL, "_PyRuntime", &rt) && !sym_section(sym, NULL, ".PyRuntime", &rt)) {
        sbuf files;
        sbuf_init(&files);
        sym_describe_files(sym, &files, 8);
        err_set(err, ERR_NOT_PYTHON, "no Python runtime (_PyRuntime) in any mapped file: %s",
                files.len ? sbuf_str(&files) : "the target maps no files");
        sbuf_free(&files);
        return ERR_NOT_PYTHON;
    }
    t->runtime = rt.addr;
    t->pyfile = rt.file;
    sym_hit ver;
    uint8_t vb[4];
    if (!sym_lookup(sym, rt.file, "Py_Version", &ver)) {
        char name[32];
        if (py_version_from_name(rt.file, name, sizeof name)) {
            return err_set(err, ERR_UNSUPPORTED, "Python %s found in %s; snarl supports 3.11 to 3.15",
                           name, rt.file->path);
        }
        return err_set(err, ERR_UNSUPPORTED,
                       "%s has a Python runtime but no Py_Version: a Python older than 3.11",
                       rt.file->path);
    }
    if (py_read_static(t, &ver, vb, sizeof vb) != ERR_OK) {
        return err_set(err, ERR_NO_FILE,
                       "cannot read Py_Version at 0x%llx from the target or from %s",
                       (unsigned long long)ver.addr, rt.file->path);
    }
    t->hexversion = rd_u32(vb, 0);
    py_version_string(t->hexversion, t->version, sizeof t->version);
    int major = (int)(t->hexversion >> 24), minor = (int)((t->hexversion >> 16) & 0xff);
    if (major != 3 || !py_layout_builtin(minor, &t->L)) {
        return err_set(err, ERR_UNSUPPORTED, "Python %s found in %s; snarl supports 3.11 to 3.15",
                       t->version, rt.file->path);
    }
    err_t e = py_layout_from_debug_offsets(t);
    if (e != ERR_OK) {
        return e;
    }
    for (size_t i = 0; i < ARRAY_LEN(py_type_syms); i++) {
        sym_hit h;
        uint64_t addr = sym_lookup(sym, rt.file, py_type_syms[i].name, &h) ? h.addr : 0;
        memcpy((char *)&t->types + py_type_syms[i].off, &addr, sizeof addr);
    }
    if (!t->types.code || !t->types.str) {
        return err_set(err, ERR_NOT_PYTHON, "%s exports no PyCode_Type/PyUnicode_Type symbols",
                       rt.file->path);
    }
    return py_check_runtime(t);
}

void py_close(py_target *t) {
    py_code_cache_free(t);
}

/* Size of the prefix of a thread state we read: up to its last field used. */
static size_t py_ts_read_size(const py_layout *L) {
    int32_t fields[] = {L->ts_next,      L->ts_interp,    L->ts_cframe,
                        L->ts_current_frame, L->ts_dict, L->ts_thread_id,
                        L->ts_native_id, L->ts_datastack_chunk};
    int32_t mx = 0;
    for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
        if (fields[i] > mx) {
            mx = fields[i];
        }
    }
    return (size_t)mx + 8;
}

/* _PyStackChunk is {previous, size, top, data[]}; a thread's first chunk
 * reserves data[0], so its outermost frame starts at data[1]. */
#define PY_CHUNK_PREVIOUS 0
#define PY_CHUNK_FIRST_FRAME 32
/* Chunks we follow back to the first one (each is at least 16 KiB). */
#define PY_CHUNKS_MAX 4096

static uint64_t py_base_frame(py_target *t, uint64_t chunk) {
    for (int i = 0; chunk && i < PY_CHUNKS_MAX; i++) {
        uint64_t prev;
        if (mem_read_u64(t->m, chunk + PY_CHUNK_PREVIOUS, &prev) != ERR_OK) {
            return 0;
        }
        if (!prev) {
            return chunk + PY_CHUNK_FIRST_FRAME;
        }
        chunk = prev;
    }
    return 0;
}

static uint64_t py_gil_holder(py_target *t, uint64_t interp) {
    const py_layout *L = &t->L;
    uint64_t gil = 0;
    if (L->rt_gil != PY_NONE) {
        gil = t->runtime + (uint64_t)L->rt_gil;
    } else if (L->is_gil_ptr != PY_NONE &&
               mem_read_u64(t->m, interp + (uint64_t)L->is_gil_ptr, &gil) != ERR_OK) {
        return 0;
    }
    uint32_t locked;
    uint64_t holder;
    if (!gil || mem_read_u32(t->m, gil + (uint64_t)L->gil_locked, &locked) != ERR_OK || !locked ||
        mem_read_u64(t->m, gil + (uint64_t)L->gil_last_holder, &holder) != ERR_OK) {
        return 0;
    }
    return holder;
}

/* threading._active maps thread idents to Thread objects; their _name is
 * what Python code and tracebacks call the thread. Best effort. */
static void py_thread_names(py_target *t, uint64_t interp, py_thread *th, size_t n) {
    uint64_t mod, md, active;
    if (py_module(t, interp, "threading", &mod) != ERR_OK || !mod ||
        mem_read_u64(t->m, mod + (uint64_t)t->L.mod_dict, &md) != ERR_OK ||
        py_dict_get_str(t, md, "_active", &active) != ERR_OK || !active) {
        return;
    }
    vec items;
    vec_init(&items, sizeof(uint64_t));
    if (py_dict_items(t, active, &items) == ERR_OK) {
        for (size_t i = 0; i + 1 < items.len; i += 2) {
            int64_t ident;
            uint64_t thread = *VEC_AT(&items, uint64_t, i + 1), name;
            if (py_read_long(t, *VEC_AT(&items, uint64_t, i), &ident) != ERR_OK ||
                py_attr(t, thread, "_name", &name) != ERR_OK || !name) {
                continue;
            }
            for (size_t k = 0; k < n; k++) {
                if (th[k].thread_id == (uint64_t)ident && th[k].interp == interp) {
                    py_read_str_buf(t, name, th[k].name, sizeof th[k].name);
                }
            }
        }
    }
    vec_free(&items);
}

err_t py_threads(py_target *t, py_threads_result *out) {
    const py_layout *L = &t->L;
    memset(out, 0, sizeof *out);
    vec_init(&out->threads, sizeof(py_thread));
    size_t tsz = py_ts_read_size(L);
    uint8_t buf[4096];
    if (tsz > sizeof buf) {
        return err_set(t->err, ERR_CORRUPT, "thread state layout too large (%zu bytes)", tsz);
    }
    u64set seen;
    u64set_init(&seen);
    uint64_t interp = 0;
    err_t e = ERR_OK;
    if (mem_read_u64(t->m, t->runtime + (uint64_t)L->rt_interp_head, &interp) != ERR_OK) {
        return err_set(t->err, ERR_CORE, "the Python runtime at 0x%llx is not readable",
                       (unsigned long long)t->runtime);
    }
    for (int ni = 0; interp && e == ERR_OK; ni++) {
        if (ni == PY_INTERPRETERS_MAX || u64set_add(&seen, interp) != 1) {
            out->truncated = true;
            break;
        }
        int64_t interp_id = 0;
        mem_read_u64(t->m, interp + (uint64_t)L->is_id, (uint64_t *)&interp_id);
        uint64_t holder = py_gil_holder(t, interp);
        uint64_t ts = 0;
        if (mem_read_u64(t->m, interp + (uint64_t)L->is_threads_head, &ts) != ERR_OK) {
            out->truncated = true;
        }
        size_t first = out->threads.len;
        for (int nt = 0; ts; nt++) {
            if (nt == PY_THREADS_MAX || u64set_add(&seen, ts) != 1 ||
                mem_read(t->m, ts, tsz, buf) != ERR_OK) {
                out->truncated = true;
                break;
            }
            py_thread *th = vec_push(&out->threads);
            if (!th) {
                e = err_set(t->err, ERR_NOMEM, NULL);
                break;
            }
            th->addr = ts;
            th->interp = interp;
            th->interp_id = interp_id;
            th->native_id = (int64_t)rd_u64(buf, (size_t)L->ts_native_id);
            th->thread_id = rd_u64(buf, (size_t)L->ts_thread_id);
            th->holds_gil = holder == ts;
            if (L->ts_current_frame != PY_NONE) {
                th->frame = rd_u64(buf, (size_t)L->ts_current_frame);
            } else {
                uint64_t cframe = rd_u64(buf, (size_t)L->ts_cframe), below;
                if (!cframe || mem_read_u64(t->m, cframe + (uint64_t)L->cf_current_frame,
                                            &th->frame) != ERR_OK) {
                    th->frame = 0;
                }
                /* The frame that entered this loop, to check the walk by. */
                if (!cframe ||
                    mem_read_u64(t->m, cframe + (uint64_t)L->cf_previous, &below) != ERR_OK ||
                    !below ||
                    mem_read_u64(t->m, below + (uint64_t)L->cf_current_frame,
                                 &th->outer_frame) != ERR_OK) {
                    th->outer_frame = 0;
                }
            }
            th->base_frame = py_base_frame(t, rd_u64(buf, (size_t)L->ts_datastack_chunk));
            ts = rd_u64(buf, (size_t)L->ts_next);
        }
        /* An interpreter without threads (a damaged list) names none; the
         * vector may not even be allocated yet. */
        if (out->threads.len > first) {
            py_thread_names(t, interp, VEC_AT(&out->threads, py_thread, first),
                            out->threads.len - first);
        }
        if (mem_read_u64(t->m, interp + (uint64_t)L->is_next, &interp) != ERR_OK) {
            out->truncated = true;
            break;
        }
    }
    u64set_free(&seen);
    if (e != ERR_OK) {
        py_threads_free(out);
    }
    return e;
}

void py_threads_free(py_threads_result *r) {
    vec_free(&r->threads);
}
