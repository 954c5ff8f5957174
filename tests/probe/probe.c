/* snarl-probe, a test tool for tests/e2e/test_readers.py: opens a live process
 * or a core as the engine does, walks the main interpreter's GC lists, and
 * prints one JSON document with the object count and every instance of the
 * named types, each named attribute decoded with the CPython layer's readers.
 * For tests/e2e/test_reach.py: --reach builds the asyncio model with weak
 * reachability and prints each task's verdict; --refs FILE prints the
 * references the reachability analysis enumerates of the listed objects. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/aio/aio_int.h"
#include "../../src/ana/ana.h"
#include "../../src/mem/mem.h"
#include "../../src/py/py.h"
#include "../../src/sym/sym.h"

/* Type flags (identical 3.11-3.15): which reader an object's type calls for,
 * subclasses included. */
#define PROBE_TPFLAGS_LONG_SUBCLASS (1ul << 24)
#define PROBE_TPFLAGS_LIST_SUBCLASS (1ul << 25)
#define PROBE_TPFLAGS_TUPLE_SUBCLASS (1ul << 26)
#define PROBE_TPFLAGS_UNICODE_SUBCLASS (1ul << 28)
#define PROBE_TPFLAGS_DICT_SUBCLASS (1ul << 29)
/* Code points decoded per str: above any string the sample makes, so a
 * test sees whole strings rather than PY_STR_MAX's cut. */
#define PROBE_STR_MAX (1u << 16)
/* Longest type name compared or printed (Python's are far shorter). */
#define PROBE_TYPE_NAME_MAX 128
/* Types and attributes named on the command line. */
#define PROBE_NAMES_MAX 512
/* Interpreters followed to reach the main one, the last of the list. */
#define PROBE_INTERPRETERS_MAX 256

static const char probe_usage[] =
    "usage: snarl-probe [-t TYPE]... [-a ATTR]... [--reach | --refs FILE] [--sysroot DIR] "
    "PID|CORE [EXE]\n";
/* Addresses read from a --refs file. */
#define PROBE_REFS_MAX (1u << 20)

/* Used when no -t / -a is given. */
static const char *const probe_default_types[] = {"Marker"};
static const char *const probe_default_attrs[] = {"name", "child", "weak", "method"};

typedef struct probe {
    py_target *py;
    const char *const *types;
    const char *const *attrs;
    size_t ntypes, nattrs;
    u64set wanted, unwanted; /* type objects already classified */
    vec found;               /* uint64_t: instances of a wanted type */
    uint64_t count;
    err_t walk_err;
} probe;

static void json_str(sbuf *o, const char *s) {
    sbuf_addc(o, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            sbuf_addc(o, '\\');
            sbuf_addc(o, (char)c);
        } else if (c < 0x20) {
            sbuf_printf(o, "\\u%04x", c);
        } else {
            sbuf_addc(o, (char)c);
        }
    }
    sbuf_addc(o, '"');
}

static void json_addr(sbuf *o, const char *key, uint64_t addr) {
    sbuf_printf(o, "\"%s\": \"0x%" PRIx64 "\"", key, addr);
}

static bool probe_type_wanted(probe *p, uint64_t type) {
    if (u64set_has(&p->wanted, type)) {
        return true;
    }
    if (u64set_has(&p->unwanted, type)) {
        return false;
    }
    char name[PROBE_TYPE_NAME_MAX];
    bool want = false;
    if (py_type_name(p->py, type, name, sizeof name) == ERR_OK) {
        for (size_t i = 0; i < p->ntypes && !want; i++) {
            want = strcmp(name, p->types[i]) == 0;
        }
    }
    u64set_add(want ? &p->wanted : &p->unwanted, type);
    return want;
}

static int probe_on_object(void *ctx, uint64_t obj) {
    probe *p = ctx;
    uint64_t type, *slot;
    p->count++;
    if (py_type_of(p->py, obj, &type) != ERR_OK || !probe_type_wanted(p, type)) {
        return 0;
    }
    if (!(slot = vec_push(&p->found))) {
        p->walk_err = ERR_NOMEM;
        return 1;
    }
    *slot = obj;
    return 0;
}

/* Writes "addr" and "type" (tp_name, with "type_error" when unreadable);
 * fills the type object, its flags and its name. */
static void probe_head(probe *p, sbuf *o, uint64_t obj, uint64_t *type, uint64_t *flags, char *name,
                       size_t cap) {
    *type = 0;
    *flags = 0;
    snprintf(name, cap, "?");
    err_t e = py_type_of(p->py, obj, type);
    if (e == ERR_OK && (e = py_type_name(p->py, *type, name, cap)) != ERR_OK) {
        snprintf(name, cap, "?");
    }
    if (*type) {
        mem_read_u64(p->py->m, *type + (uint64_t)p->py->L.tp_flags, flags);
    }
    json_addr(o, "addr", obj);
    sbuf_adds(o, ", \"type\": ");
    json_str(o, name);
    if (e != ERR_OK) {
        sbuf_printf(o, ", \"type_error\": \"%s\"", err_name(e));
    }
}

/* probe_head and, for str and int (bool included), the decoded value. */
static void probe_scalar(probe *p, sbuf *o, uint64_t obj, uint64_t *type, uint64_t *flags,
                         char *name, size_t cap) {
    probe_head(p, o, obj, type, flags, name, cap);
    err_t e = ERR_OK;
    if (*flags & PROBE_TPFLAGS_UNICODE_SUBCLASS) {
        sbuf text;
        bool cut;
        sbuf_init(&text);
        if ((e = py_read_str(p->py, obj, &text, PROBE_STR_MAX, &cut)) == ERR_OK) {
            sbuf_adds(o, ", \"str\": ");
            json_str(o, sbuf_str(&text));
            sbuf_printf(o, ", \"cut\": %s", cut ? "true" : "false");
        }
        sbuf_free(&text);
    } else if (*flags & PROBE_TPFLAGS_LONG_SUBCLASS) {
        int64_t v;
        if ((e = py_read_long(p->py, obj, &v)) == ERR_OK) {
            sbuf_printf(o, ", \"int\": %" PRId64, v);
        }
    }
    if (e != ERR_OK) {
        sbuf_printf(o, ", \"error\": \"%s\"", err_name(e));
    }
}

/* Items shallowly: each as probe_scalar, dict items as [key, value]. */
static void probe_items(probe *p, sbuf *o, const vec *items, bool pairs) {
    uint64_t type, flags;
    char name[PROBE_TYPE_NAME_MAX];
    size_t step = pairs ? 2 : 1;
    sbuf_adds(o, ", \"items\": [");
    for (size_t i = 0; i + step <= items->len; i += step) {
        sbuf_adds(o, i ? ", " : "");
        sbuf_adds(o, pairs ? "[{" : "{");
        probe_scalar(p, o, *VEC_AT(items, uint64_t, i), &type, &flags, name, sizeof name);
        if (pairs) {
            sbuf_adds(o, "}, {");
            probe_scalar(p, o, *VEC_AT(items, uint64_t, i + 1), &type, &flags, name, sizeof name);
        }
        sbuf_adds(o, pairs ? "}]" : "}");
    }
    sbuf_adds(o, "]");
}

/* probe_scalar plus one level of contents: container items (dict items as
 * [key, value] pairs), a weakref's referent, a bound method's self and
 * function. */
static void probe_describe(probe *p, sbuf *o, uint64_t obj) {
    const py_types *T = &p->py->types;
    const py_layout *L = &p->py->L;
    uint64_t type, flags;
    char name[PROBE_TYPE_NAME_MAX];
    sbuf_adds(o, "{");
    probe_scalar(p, o, obj, &type, &flags, name, sizeof name);
    vec items;
    vec_init(&items, sizeof(uint64_t));
    err_t e = ERR_OK;
    bool listed = true, pairs = false;
    if (flags & PROBE_TPFLAGS_TUPLE_SUBCLASS) {
        e = py_tuple_items(p->py, obj, &items);
    } else if (flags & PROBE_TPFLAGS_LIST_SUBCLASS) {
        e = py_list_items(p->py, obj, &items);
    } else if (flags & PROBE_TPFLAGS_DICT_SUBCLASS) {
        e = py_dict_items(p->py, obj, &items);
        pairs = true;
    } else if (type == T->set || type == T->frozenset) {
        e = py_set_items(p->py, obj, &items);
    } else if (strcmp(name, "collections.deque") == 0) {
        e = py_deque_items(p->py, obj, &items);
    } else {
        listed = false;
    }
    if (listed && e == ERR_OK) {
        probe_items(p, o, &items, pairs);
    } else if (listed) {
        sbuf_printf(o, ", \"items_error\": \"%s\"", err_name(e));
    }
    vec_free(&items);
    uint64_t a = 0, b = 0;
    if (type && type == T->weakref) {
        if (mem_read_u64(p->py->m, obj + (uint64_t)L->wr_object, &a) == ERR_OK) {
            sbuf_adds(o, ", ");
            json_addr(o, "referent", a);
        }
    } else if (type && type == T->method) {
        if (mem_read_u64(p->py->m, obj + (uint64_t)L->meth_self, &a) == ERR_OK &&
            mem_read_u64(p->py->m, obj + (uint64_t)L->meth_func, &b) == ERR_OK) {
            sbuf_adds(o, ", ");
            json_addr(o, "self", a);
            sbuf_adds(o, ", ");
            json_addr(o, "func", b);
        }
    }
    sbuf_adds(o, "}");
}

static void probe_object(probe *p, sbuf *o, uint64_t obj) {
    uint64_t type, flags;
    char name[PROBE_TYPE_NAME_MAX];
    sbuf_adds(o, "  {");
    probe_head(p, o, obj, &type, &flags, name, sizeof name);
    sbuf_adds(o, ", \"attrs\": {");
    for (size_t i = 0; i < p->nattrs; i++) {
        uint64_t value = 0;
        err_t e = py_attr(p->py, obj, p->attrs[i], &value);
        sbuf_adds(o, i ? ",\n    " : "\n    ");
        json_str(o, p->attrs[i]);
        if (e != ERR_OK) {
            sbuf_printf(o, ": {\"error\": \"%s\"}", err_name(e));
        } else if (!value) {
            sbuf_adds(o, ": {\"absent\": true}");
        } else {
            sbuf_adds(o, ": ");
            probe_describe(p, o, value);
        }
    }
    sbuf_adds(o, "}}");
}

/* The main interpreter is the first created, so the last of the list. */
static err_t probe_main_interp(py_target *py, uint64_t *interp) {
    uint64_t at, next;
    if (mem_read_u64(py->m, py->runtime + (uint64_t)py->L.rt_interp_head, &at) != ERR_OK || !at) {
        return ERR_READ;
    }
    for (int i = 0; i < PROBE_INTERPRETERS_MAX; i++) {
        if (mem_read_u64(py->m, at + (uint64_t)py->L.is_next, &next) != ERR_OK) {
            return ERR_READ;
        }
        if (!next) {
            *interp = at;
            return ERR_OK;
        }
        at = next;
    }
    return ERR_LIMIT;
}

static void probe_json_ids(sbuf *o, const vec *ids) {
    sbuf_adds(o, "[");
    for (size_t i = 0; i < ids->len; i++) {
        sbuf_printf(o, "%s\"0x%" PRIx64 "\"", i ? ", " : "", *VEC_AT(ids, uint64_t, i));
    }
    sbuf_adds(o, "]");
}

/* --reach: the model with weak reachability, each task's verdict. */
static err_t probe_reach(py_target *py, err_record *err, sbuf *o) {
    aio_model model;
    memset(&model, 0, sizeof model);
    vec_init(&model.threads, sizeof(aio_thread));
    vec_init(&model.tasks, sizeof(aio_task));
    vec_init(&model.loops, sizeof(aio_loop));
    vec_init(&model.resources, sizeof(aio_resource));
    vec_init(&model.warnings, sizeof(char *));
    vec_init(&model.chains, sizeof(uint64_t));
    aio_options opt = {.tasks = true, .reachability = true};
    bool live = strcmp(py->m->ops->kind, "live") == 0;
    model.target.kind = live ? "live" : "core";
    model.target.pid = py->m->pid;
    err_t e = live ? mem_freeze(py->m) : ERR_OK;
    if (e == ERR_OK) {
        e = aio_build(py, &opt, &model);
        if (live) {
            mem_thaw(py->m);
        }
    }
    if (e != ERR_OK) {
        if (err->code == ERR_OK) {
            err_set(err, e, "building the model: %s", err_sentence(e));
        }
        aio_model_free(&model);
        return e;
    }
    /* The verdicts are the analysis layer's, over the graph just read. */
    ana_result res;
    e = ana_diagnose(&model, &res);
    if (e != ERR_OK) {
        err_set(err, e, "analysing the model: %s", err_sentence(e));
        aio_model_free(&model);
        return e;
    }
    if (res.reach_doubt) {
        aio_warn(&model, "weak reachability is incomplete (%s)", res.reach_doubt);
    }
    sbuf_printf(o,
                "{\"python\": \"%s\", \"reach\": {\"objects\": %" PRIu64 ", \"roots\": %" PRIu64
                ", \"incomplete\": %s},\n \"tasks\": [",
                py->version, res.reach_objects, res.reach_roots, res.weak_known ? "false" : "true");
    for (size_t i = 0; i < model.tasks.len; i++) {
        const aio_task *t = VEC_AT(&model.tasks, aio_task, i);
        sbuf_printf(o, "%s\n  {\"id\": \"0x%" PRIx64 "\", \"name\": ", i ? "," : "", t->id);
        json_str(o, t->name ? t->name : "");
        sbuf_printf(o, ", \"state\": \"%s\", \"weak_only\": %s, \"stuck\": %s}",
                    aio_state_name(t->state),
                    ana_task_verdict(&res, i) & ANA_TASK_WEAK ? "true" : "false",
                    ana_task_verdict(&res, i) & ANA_TASK_STUCK ? "true" : "false");
    }
    sbuf_adds(o, "],\n \"warnings\": [");
    for (size_t i = 0; i < model.warnings.len; i++) {
        sbuf_adds(o, i ? ", " : "");
        json_str(o, *VEC_AT(&model.warnings, char *, i));
    }
    sbuf_adds(o, "]}\n");
    ana_result_free(&res);
    aio_model_free(&model);
    return ERR_OK;
}

typedef struct probe_refs_out {
    sbuf *o;
    size_t n;
} probe_refs_out;

static void probe_on_refs(void *ctx, uint64_t obj, err_t e, const vec *refs, bool complete) {
    probe_refs_out *po = ctx;
    vec owned, borrowed;
    vec_init(&owned, sizeof(uint64_t));
    vec_init(&borrowed, sizeof(uint64_t));
    for (size_t i = 0; i < refs->len; i++) {
        uint64_t r = *VEC_AT(refs, uint64_t, i);
        uint64_t *slot = vec_push(r & PY_REF_BORROWED ? &borrowed : &owned);
        if (slot) {
            *slot = r & ~(uint64_t)PY_REF_BORROWED;
        }
    }
    sbuf_printf(po->o,
                "%s\n  \"0x%" PRIx64 "\": {\"complete\": %s, \"error\": ", po->n++ ? "," : "", obj,
                complete ? "true" : "false");
    if (e == ERR_OK) {
        sbuf_adds(po->o, "null");
    } else {
        json_str(po->o, err_name(e));
    }
    sbuf_adds(po->o, ", \"refs\": ");
    probe_json_ids(po->o, &owned);
    sbuf_adds(po->o, ", \"borrowed\": ");
    probe_json_ids(po->o, &borrowed);
    sbuf_adds(po->o, "}");
    vec_free(&owned);
    vec_free(&borrowed);
}

/* --refs FILE: one hex address a line. */
static err_t probe_refs(py_target *py, const char *path, sbuf *o) {
    FILE *f = fopen(path, "re");
    if (!f) {
        return ERR_IO;
    }
    vec objs;
    vec_init(&objs, sizeof(uint64_t));
    char line[64];
    err_t e = ERR_OK;
    while (fgets(line, sizeof line, f) && objs.len < PROBE_REFS_MAX) {
        uint64_t *slot = vec_push(&objs);
        if (!slot) {
            e = ERR_NOMEM;
            break;
        }
        *slot = strtoull(line, NULL, 16);
    }
    fclose(f);
    aio_model model;
    memset(&model, 0, sizeof model);
    vec_init(&model.warnings, sizeof(char *));
    vec_init(&model.chains, sizeof(uint64_t));
    aio_options opt = {.tasks = true};
    aio_ctx c;
    memset(&c, 0, sizeof c);
    c.t = py;
    c.model = &model;
    c.opt = &opt;
    if (e == ERR_OK &&
        mem_read_u64(py->m, py->runtime + (uint64_t)py->L.rt_interp_head, &c.interp) != ERR_OK) {
        e = ERR_READ;
    }
    if (e == ERR_OK) {
        e = aio_layout_init(&c);
    }
    probe_refs_out po = {.o = o};
    sbuf_printf(o, "{\"python\": \"%s\", \"objects\": {", py->version);
    if (e == ERR_OK) {
        e = aio_reach_each_refs(&c, (const uint64_t *)objs.data, objs.len, probe_on_refs, &po);
    }
    sbuf_adds(o, "}}\n");
    vec_free(&objs);
    aio_model_free(&model);
    return e;
}

static int probe_fail(const err_record *err, const char *what) {
    fprintf(stderr, "snarl-probe: %s: %s\n", what,
            err->msg[0] ? err->msg : err_sentence(err->code));
    return 2;
}

static bool probe_is_pid(const char *s) {
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s)) {
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv) {
    static const char *types[PROBE_NAMES_MAX], *attrs[PROBE_NAMES_MAX];
    size_t ntypes = 0, nattrs = 0;
    const char *sysroot = NULL, *target = NULL, *exe = NULL, *refs_file = NULL;
    bool reach = false;
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "-t") == 0 && has_value && ntypes < PROBE_NAMES_MAX) {
            types[ntypes++] = argv[++i];
        } else if (strcmp(argv[i], "-a") == 0 && has_value && nattrs < PROBE_NAMES_MAX) {
            attrs[nattrs++] = argv[++i];
        } else if (strcmp(argv[i], "--reach") == 0) {
            reach = true;
        } else if (strcmp(argv[i], "--refs") == 0 && has_value) {
            refs_file = argv[++i];
        } else if (strcmp(argv[i], "--sysroot") == 0 && has_value) {
            sysroot = argv[++i];
        } else if (argv[i][0] != '-' && !target) {
            target = argv[i];
        } else if (argv[i][0] != '-' && !exe) {
            exe = argv[i];
        } else {
            fputs(probe_usage, stderr);
            return 2;
        }
    }
    if (!target) {
        fputs(probe_usage, stderr);
        return 2;
    }
    probe p = {.types = types, .attrs = attrs, .ntypes = ntypes, .nattrs = nattrs};
    if (!ntypes) {
        p.types = probe_default_types;
        p.ntypes = ARRAY_LEN(probe_default_types);
    }
    if (!nattrs) {
        p.attrs = probe_default_attrs;
        p.nattrs = ARRAY_LEN(probe_default_attrs);
    }

    err_record err;
    err_clear(&err);
    bool live = probe_is_pid(target) && !exe;
    mem *m =
        live ? mem_live_open(&err, atoi(target), false) : mem_core_open(&err, target, exe, sysroot);
    if (!m) {
        return probe_fail(&err, target);
    }
    sym_table sym;
    py_target py;
    bool py_opened = false;
    err_t e = sym_open(&sym, m);
    if (e != ERR_OK) {
        err_set(&err, e, "%s", err_sentence(e));
    } else {
        e = py_open(&py, m, &sym, &err);
        py_opened = true;
    }
    p.py = &py;
    if (e == ERR_OK && (reach || refs_file)) {
        sbuf o;
        sbuf_init(&o);
        e = reach ? probe_reach(&py, &err, &o) : probe_refs(&py, refs_file, &o);
        int status = 0;
        if (e != ERR_OK || o.oom) {
            if (err.code == ERR_OK) {
                err_set(&err, e, "%s", err_sentence(e));
            }
            status = probe_fail(&err, target);
        } else {
            fwrite(o.data, 1, o.len, stdout);
        }
        sbuf_free(&o);
        py_close(&py);
        sym_close(&sym);
        mem_close(m);
        return status;
    }
    u64set_init(&p.wanted);
    u64set_init(&p.unwanted);
    vec_init(&p.found, sizeof(uint64_t));
    uint64_t interp = 0;
    bool truncated = false;
    if (e == ERR_OK && (e = probe_main_interp(&py, &interp)) == ERR_OK) {
        e = py_gc_each(&py, interp, probe_on_object, &p, &truncated);
        if (e == ERR_OK) {
            e = p.walk_err;
        }
        if (e != ERR_OK) {
            err_set(&err, e, "walking the GC lists of interpreter 0x%" PRIx64 ": %s", interp,
                    err_sentence(e));
        }
    } else if (e != ERR_OK && err.code == ERR_OK) {
        err_set(&err, e, "the main interpreter is not readable");
    }
    int status = 0;
    if (e != ERR_OK) {
        status = probe_fail(&err, target);
    } else {
        sbuf o;
        sbuf_init(&o);
        sbuf_adds(&o, "{\"python\": ");
        json_str(&o, py.version);
        sbuf_printf(&o, ", \"gc_objects\": %" PRIu64 ", \"gc_truncated\": %s, ", p.count,
                    truncated ? "true" : "false");
        json_addr(&o, "interp", interp);
        /* The asyncio debug table (3.14+): proves section lookup in a
         * separate _asyncio .so and in the executable alike. */
        sym_hit ad;
        uint64_t task_size = 0;
        if (sym_section(&sym, NULL, ".AsyncioDebug", &ad) &&
            mem_read_u64(m, ad.addr, &task_size) == ERR_OK) {
            sbuf_printf(&o,
                        ", \"asyncio_debug\": {\"task_size\": %" PRIu64 ", \"file\": ", task_size);
            json_str(&o, ad.file->path);
            sbuf_adds(&o, "}");
        }
        sbuf_adds(&o, ",\n \"objects\": [\n");
        for (size_t i = 0; i < p.found.len; i++) {
            sbuf_adds(&o, i ? ",\n" : "");
            probe_object(&p, &o, *VEC_AT(&p.found, uint64_t, i));
        }
        sbuf_adds(&o, "]}\n");
        if (o.oom) {
            fputs("snarl-probe: out of memory\n", stderr);
            status = 2;
        } else {
            fwrite(o.data, 1, o.len, stdout);
        }
        sbuf_free(&o);
    }
    vec_free(&p.found);
    u64set_free(&p.unwanted);
    u64set_free(&p.wanted);
    if (py_opened) {
        py_close(&py);
    }
    sym_close(&sym);
    mem_close(m);
    return status;
}
