/* Weak reachability: which pending tasks CPython's cycle collector would
 * destroy at the next full collection ("Task was destroyed but it is
 * pending!"). Replays the collector (update_refs, subtract_refs,
 * move_unreachable) over the main interpreter's GC lists with the
 * references py_traverse.c and the asyncio types below enumerate. What it
 * cannot enumerate only keeps objects alive; any doubt flags nothing. */
#include "aio_int.h"

#include <string.h>

/* Edges kept between two passes (4 bytes each); a heap of 2^26 objects
 * (PY_GC_OBJECTS_MAX) averages far fewer than 16 each. */
#define AIO_REACH_EDGES_MAX (1u << 30)
/* The longest type name compared here ("_asyncio.FutureIter"). */
#define AIO_REACH_TYPE_NAME 64
/* Instance sizes of the two small _asyncio helper types, checked with their
 * names: {PyObject_HEAD; future} and {PyObject_HEAD; task; arg}. */
#define AIO_FUTUREITER_SIZE 24
#define AIO_STEPWRAPPER_SIZE 32
/* Their fields. */
#define AIO_FUTUREITER_FUTURE 16
#define AIO_STEPWRAPPER_TASK 16
#define AIO_STEPWRAPPER_ARG 24

/* Per-object state. */
#define AIO_R_ROOT 1u     /* referenced from outside the tracked set */
#define AIO_R_MARKED 2u   /* reached from a root */
#define AIO_R_FROZEN 4u   /* gc.freeze()'s permanent generation: never collected */
#define AIO_R_IMMORTAL 8u /* 3.12+: its count is not a count */

/* What the asyncio types' traverses visit (Modules/_asynciomodule.c). */
typedef enum aio_rkind {
    AIO_RK_OTHER,
    AIO_RK_FUTURE, /* FutureObj_traverse */
    AIO_RK_TASK,   /* TaskObj_traverse */
    AIO_RK_FUTUREITER,
    AIO_RK_STEPWRAPPER,
} aio_rkind;

typedef struct aio_reach {
    aio_ctx *c;
    py_walker w;
    vec objs;       /* uint64_t: the tracked objects, in list order */
    vec flags;      /* uint8_t per object */
    vec refs;       /* int64_t per object: gc_refs */
    vec edge_start; /* uint32_t per object + 1: its edges in `edges` */
    vec edges;      /* uint32_t object indexes */
    u64map index;   /* address -> 1 + index */
    vec scratch;    /* uint64_t references of one object */
    vec stack;      /* uint32_t marking work list */
    u64map kinds;   /* type whose traverse py_traverse.c left -> aio_rkind + 1 */
    uint64_t task_traverse, future_traverse;
    uint64_t failures; /* objects whose references could not be read */
    const char *why;   /* the first reason the verdict is incomplete */
} aio_reach;

static void aio_reach_doubt(aio_reach *r, const char *why) {
    if (!r->why) {
        r->why = why;
    }
}

static int aio_reach_collect(void *ctx, uint64_t obj, int generation) {
    aio_reach *r = ctx;
    uint64_t *slot = vec_push(&r->objs);
    uint8_t *flag = slot ? vec_push(&r->flags) : NULL;
    if (!flag || !u64map_put(&r->index, obj, r->objs.len)) {
        aio_reach_doubt(r, "out of memory");
        return 1;
    }
    *slot = obj;
    *flag = generation == PY_GC_PERMANENT ? AIO_R_FROZEN | AIO_R_ROOT : 0;
    return 0;
}

static bool aio_reach_find(const aio_reach *r, uint64_t obj, uint32_t *idx) {
    uint64_t v;
    if (!u64map_get(&r->index, obj, &v)) {
        return false;
    }
    *idx = (uint32_t)(v - 1);
    return true;
}

static uint64_t aio_reach_type_attr(aio_ctx *c, const char *name) {
    py_target *t = c->t;
    uint64_t mod = 0, md = 0, v = 0;
    if (py_module(t, c->interp, "_asyncio", &mod) != ERR_OK || !mod ||
        mem_read_u64(t->m, mod + (uint64_t)t->L.mod_dict, &md) != ERR_OK || !md ||
        py_dict_get_str(t, md, name, &v) != ERR_OK) {
        return 0;
    }
    return v;
}

/* Which asyncio traverse a type has; the C Task and Future by their
 * functions (subclasses share them), the helpers by name and size. */
static aio_rkind aio_reach_kind(aio_reach *r, uint64_t type) {
    py_target *t = r->c->t;
    uint64_t v;
    if (u64map_get(&r->kinds, type, &v)) {
        return (aio_rkind)(v - 1);
    }
    aio_rkind k = AIO_RK_OTHER;
    uint64_t fn = py_type_traverse(t, type), size = 0;
    char name[AIO_REACH_TYPE_NAME];
    if (fn && fn == r->task_traverse) {
        k = AIO_RK_TASK;
    } else if (fn && fn == r->future_traverse) {
        k = AIO_RK_FUTURE;
    } else if (py_type_name(t, type, name, sizeof name) == ERR_OK &&
               mem_read_u64(t->m, type + (uint64_t)t->L.tp_basicsize, &size) == ERR_OK) {
        if (strcmp(name, "_asyncio.FutureIter") == 0 && size == AIO_FUTUREITER_SIZE) {
            k = AIO_RK_FUTUREITER;
        } else if (strcmp(name, "TaskStepMethWrapper") == 0 && size == AIO_STEPWRAPPER_SIZE) {
            k = AIO_RK_STEPWRAPPER;
        }
    }
    u64map_put(&r->kinds, type, (uint64_t)k + 1); /* a lost cache entry costs time only */
    return k;
}

static err_t aio_reach_fields(py_target *t, uint64_t obj, const int32_t *offs, size_t n, vec *out) {
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        if (offs[i] == PY_NONE) {
            continue;
        }
        if (mem_read_u64(t->m, obj + (uint64_t)offs[i], &v) != ERR_OK) {
            return ERR_READ;
        }
        err_t e = py_ref_push(out, v);
        if (e != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

/* FutureObj_traverse and TaskObj_traverse, field by field per version. */
static err_t aio_reach_future_refs(aio_reach *r, uint64_t obj, uint64_t type, bool task, vec *out) {
    py_target *t = r->c->t;
    const aio_layout *A = &r->c->A;
    int32_t offs[] = {
        A->fut_loop,
        A->fut_callback0,
        A->fut_callback0 + 8, /* fut_context0 */
        A->fut_callbacks,
        A->fut_result,
        A->fut_exception,
        A->fut_exception + 8, /* fut_exception_tb */
        A->fut_source_tb,
        A->fut_cancel_msg,
        A->fut_cancelled_exc,
        A->fut_awaited_by,
        A->fut_dict,
        task ? A->task_context : PY_NONE,
        task ? A->task_coro : PY_NONE,
        task ? A->task_name : PY_NONE,
        task ? A->task_fut_waiter : PY_NONE,
    };
    /* 3.12 made the _asyncio types heap types, whose instances visit them. */
    err_t e = t->L.heap_c_types ? py_ref_push(out, type) : ERR_OK;
    if (e == ERR_OK) {
        e = aio_reach_fields(t, obj, offs, ARRAY_LEN(offs), out);
    }
    if (e == ERR_OK && A->fut_dict == PY_NONE) {
        e = py_managed_dict_refs(&r->w, obj, type, out);
    }
    return e;
}

/* The references of one object: py_traverse.c's part, then the asyncio
 * base it left. */
static err_t aio_reach_refs(aio_reach *r, uint64_t obj, uint64_t type, bool *legacy,
                            bool *complete) {
    py_target *t = r->c->t;
    uint64_t rest;
    r->scratch.len = 0;
    err_t e = py_refs(&r->w, obj, type, &r->scratch, &rest, legacy);
    *complete = !rest;
    if (e != ERR_OK || !rest) {
        return e;
    }
    *complete = true;
    static const int32_t iter[] = {AIO_FUTUREITER_FUTURE};
    static const int32_t wrapper[] = {AIO_STEPWRAPPER_TASK, AIO_STEPWRAPPER_ARG};
    bool heap_types = t->L.heap_c_types;
    switch (aio_reach_kind(r, rest)) {
    case AIO_RK_TASK:
        return aio_reach_future_refs(r, obj, type, true, &r->scratch);
    case AIO_RK_FUTURE:
        return aio_reach_future_refs(r, obj, type, false, &r->scratch);
    case AIO_RK_FUTUREITER:
        e = heap_types ? py_ref_push(&r->scratch, type) : ERR_OK;
        return e == ERR_OK ? aio_reach_fields(t, obj, iter, ARRAY_LEN(iter), &r->scratch) : e;
    case AIO_RK_STEPWRAPPER:
        e = heap_types ? py_ref_push(&r->scratch, type) : ERR_OK;
        return e == ERR_OK ? aio_reach_fields(t, obj, wrapper, ARRAY_LEN(wrapper), &r->scratch) : e;
    case AIO_RK_OTHER:
        *complete = false;
        break;
    }
    return ERR_OK;
}

/* update_refs and subtract_refs, keeping each object's edges for the mark. */
static err_t aio_reach_subtract(aio_reach *r) {
    py_target *t = r->c->t;
    size_t n = r->objs.len;
    for (size_t i = 0; i < n; i++) {
        int64_t *rc = vec_push(&r->refs);
        if (!rc) {
            return ERR_NOMEM;
        }
        uint64_t obj = *VEC_AT(&r->objs, uint64_t, i);
        uint8_t *flag = VEC_AT(&r->flags, uint8_t, i);
        uint8_t head[16];
        if (mem_read(t->m, obj, sizeof head, head) != ERR_OK) {
            *flag |= AIO_R_ROOT | AIO_R_IMMORTAL; /* no count to check either */
            r->failures++;
            continue;
        }
        if (!py_refcount_word(t, rd_u64(head, (size_t)t->L.ob_refcnt), rc)) {
            *flag |= AIO_R_ROOT | AIO_R_IMMORTAL;
        } else if (*rc <= 0) {
            aio_reach_doubt(r, "an object on the GC lists has no reference");
        }
    }
    uint32_t *start = vec_push(&r->edge_start);
    if (!start) {
        return ERR_NOMEM;
    }
    *start = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t obj = *VEC_AT(&r->objs, uint64_t, i), type;
        bool legacy = false, complete;
        err_t e = py_type_of(t, obj, &type);
        if (e == ERR_OK) {
            e = aio_reach_refs(r, obj, type, &legacy, &complete);
        }
        if (e == ERR_NOMEM) {
            return e;
        }
        if (e != ERR_OK) {
            /* Nothing of it subtracted: its referents look referenced from
             * outside, which only keeps them alive. */
            r->failures++;
            r->scratch.len = 0;
        }
        if (legacy) {
            /* Cyclic garbage behind a tp_del finalizer goes to gc.garbage
             * and lives on: as good as a root. */
            *VEC_AT(&r->flags, uint8_t, i) |= AIO_R_ROOT;
        }
        for (size_t k = 0; k < r->scratch.len; k++) {
            uint64_t ref = *VEC_AT(&r->scratch, uint64_t, k);
            uint32_t j;
            if (!aio_reach_find(r, ref & ~(uint64_t)PY_REF_BORROWED, &j)) {
                continue; /* untracked: no part in a cycle */
            }
            if (r->edges.len >= AIO_REACH_EDGES_MAX) {
                aio_reach_doubt(r, "too many references");
                return ERR_LIMIT;
            }
            uint32_t *edge = vec_push(&r->edges);
            if (!edge) {
                return ERR_NOMEM;
            }
            *edge = j;
            if (!(ref & PY_REF_BORROWED)) {
                (*VEC_AT(&r->refs, int64_t, j))--;
            }
        }
        if (!(start = vec_push(&r->edge_start))) {
            return ERR_NOMEM;
        }
        *start = (uint32_t)r->edges.len;
    }
    return ERR_OK;
}

static err_t aio_reach_mark_one(aio_reach *r, uint32_t i) {
    uint8_t *flag = VEC_AT(&r->flags, uint8_t, i);
    if (*flag & AIO_R_MARKED) {
        return ERR_OK;
    }
    *flag |= AIO_R_MARKED;
    uint32_t *slot = vec_push(&r->stack);
    if (!slot) {
        return ERR_NOMEM;
    }
    *slot = i;
    return ERR_OK;
}

static err_t aio_reach_mark_addr(aio_reach *r, uint64_t ref) {
    uint32_t i;
    if (!aio_reach_find(r, ref & ~(uint64_t)PY_REF_BORROWED, &i)) {
        return ERR_OK;
    }
    *VEC_AT(&r->flags, uint8_t, i) |= AIO_R_ROOT;
    return aio_reach_mark_one(r, i);
}

/* Roots the counts cannot show: what thread frames hold (3.14+ frames may
 * borrow), and the interpreter's own dicts. Belt and braces: a strong
 * reference from outside the tracked set already kept its count above zero. */
static err_t aio_reach_extra_roots(aio_reach *r) {
    aio_ctx *c = r->c;
    py_target *t = c->t;
    const aio_model *m = c->model;
    err_t e = ERR_OK;
    for (size_t i = 0; i < m->threads.len && e == ERR_OK; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        for (size_t k = 0; k < th->frames.len && e == ERR_OK; k++) {
            const aio_frame *f = VEC_AT(&th->frames, aio_frame, k);
            if (!f->function || !f->addr) {
                continue; /* unreadable: its strong references are counted */
            }
            r->scratch.len = 0;
            if (py_frame_all_slots(&r->w, f->addr, &r->scratch) == ERR_NOMEM) {
                return ERR_NOMEM;
            }
            for (size_t s = 0; s < r->scratch.len && e == ERR_OK; s++) {
                e = aio_reach_mark_addr(r, *VEC_AT(&r->scratch, uint64_t, s));
            }
        }
    }
    const int32_t interp_roots[] = {t->L.is_sysdict, t->L.is_builtins, t->L.is_modules};
    for (size_t i = 0; i < ARRAY_LEN(interp_roots) && e == ERR_OK; i++) {
        uint64_t v;
        if (interp_roots[i] != PY_NONE &&
            mem_read_u64(t->m, c->interp + (uint64_t)interp_roots[i], &v) == ERR_OK) {
            e = aio_reach_mark_addr(r, v);
        }
    }
    return e;
}

/* move_unreachable: everything a root reaches is alive. */
static err_t aio_reach_mark(aio_reach *r) {
    err_t e = aio_reach_extra_roots(r);
    for (size_t i = 0; i < r->objs.len && e == ERR_OK; i++) {
        uint8_t *flag = VEC_AT(&r->flags, uint8_t, i);
        int64_t rc = *VEC_AT(&r->refs, int64_t, i);
        if (rc < 0 && !(*flag & AIO_R_IMMORTAL)) {
            /* More references subtracted than the object has: what snarl
             * read does not add up (damage, or a target that moved). */
            aio_reach_doubt(r, "reference counts do not add up");
        }
        if (rc > 0) {
            *flag |= AIO_R_ROOT;
        }
        if (*flag & AIO_R_ROOT) {
            r->c->model->reach.roots++;
            e = aio_reach_mark_one(r, (uint32_t)i);
        }
    }
    while (e == ERR_OK && r->stack.len) {
        uint32_t i = *VEC_AT(&r->stack, uint32_t, --r->stack.len);
        uint32_t from = *VEC_AT(&r->edge_start, uint32_t, i);
        uint32_t to = *VEC_AT(&r->edge_start, uint32_t, i + 1);
        for (uint32_t k = from; k < to && e == ERR_OK; k++) {
            e = aio_reach_mark_one(r, *VEC_AT(&r->edges, uint32_t, k));
        }
    }
    return e;
}

static void aio_reach_free(aio_reach *r) {
    py_walker_free(&r->w);
    vec_free(&r->objs);
    vec_free(&r->flags);
    vec_free(&r->refs);
    vec_free(&r->edge_start);
    vec_free(&r->edges);
    u64map_free(&r->index);
    vec_free(&r->scratch);
    vec_free(&r->stack);
    u64map_free(&r->kinds);
}

static bool aio_reach_any_pending(const aio_model *m) {
    for (size_t i = 0; i < m->tasks.len; i++) {
        if (VEC_AT(&m->tasks, aio_task, i)->state == AIO_STATE_PENDING) {
            return true;
        }
    }
    return false;
}

static err_t aio_reach_init(aio_reach *r, aio_ctx *c) {
    memset(r, 0, sizeof *r);
    r->c = c;
    vec_init(&r->objs, sizeof(uint64_t));
    vec_init(&r->flags, sizeof(uint8_t));
    vec_init(&r->refs, sizeof(int64_t));
    vec_init(&r->edge_start, sizeof(uint32_t));
    vec_init(&r->edges, sizeof(uint32_t));
    vec_init(&r->scratch, sizeof(uint64_t));
    vec_init(&r->stack, sizeof(uint32_t));
    err_t e = py_walker_init(&r->w, c->t, c->interp);
    if (e == ERR_OK && !r->w.subtype_traverse) {
        /* Without it no Python object is traversed: every task would look
         * alive, which is safe but says nothing. */
        aio_reach_doubt(r, "the traverse of Python classes was not found");
    }
    r->task_traverse = py_type_traverse(c->t, aio_reach_type_attr(c, "Task"));
    r->future_traverse = py_type_traverse(c->t, aio_reach_type_attr(c, "Future"));
    return e;
}

err_t aio_reach_each_refs(aio_ctx *c, const uint64_t *objs, size_t n, aio_refs_cb cb, void *ctx) {
    aio_reach r;
    err_t e = aio_reach_init(&r, c);
    for (size_t i = 0; i < n && e == ERR_OK; i++) {
        uint64_t type;
        bool legacy, complete = false;
        err_t oe = py_type_of(c->t, objs[i], &type);
        if (oe == ERR_OK) {
            oe = aio_reach_refs(&r, objs[i], type, &legacy, &complete);
        }
        if (oe == ERR_NOMEM) {
            e = oe;
        } else {
            cb(ctx, objs[i], oe, &r.scratch, complete);
        }
        r.scratch.len = 0;
    }
    aio_reach_free(&r);
    return e;
}

err_t aio_reachability(aio_ctx *c) {
    aio_model *m = c->model;
    memset(&m->reach, 0, sizeof m->reach);
    if (!aio_reach_any_pending(m)) {
        return ERR_OK; /* nothing to decide */
    }
    aio_reach r;
    err_t e = aio_reach_init(&r, c);
    bool truncated = false;
    if (c->t->L.free_threaded) {
        /* No PyGC_Head lists and split counts: nothing here would hold. */
        aio_reach_doubt(&r, "free-threaded builds are not supported");
    }
    if (e == ERR_OK && !r.why) {
        e = py_gc_each_gen(c->t, c->interp, aio_reach_collect, &r, &truncated);
        if (e == ERR_READ) {
            aio_reach_doubt(&r, "the GC lists are unreadable");
            e = ERR_OK;
        } else if (truncated) {
            aio_reach_doubt(&r, "the GC lists are damaged or too long");
        }
        if (r.index.count != r.objs.len) {
            aio_reach_doubt(&r, "an object is twice on the GC lists");
        }
    }
    if (e == ERR_OK && !r.why) {
        e = aio_reach_subtract(&r);
    }
    if (e == ERR_OK && !r.why) {
        e = aio_reach_mark(&r);
    }
    if (e == ERR_LIMIT) {
        e = ERR_OK; /* the doubt says which limit */
    }
    if (r.failures) {
        aio_reach_doubt(&r, "some objects could not be read");
    }
    m->reach.objects = r.objs.len;
    m->reach.incomplete = r.why != NULL || e != ERR_OK;
    for (size_t i = 0; i < m->tasks.len && e == ERR_OK && !m->reach.incomplete; i++) {
        aio_task *task = VEC_AT(&m->tasks, aio_task, i);
        uint32_t idx;
        task->weak_only = task->state == AIO_STATE_PENDING && aio_reach_find(&r, task->id, &idx) &&
                          !(*VEC_AT(&r.flags, uint8_t, idx) & AIO_R_MARKED);
    }
    if (e == ERR_OK && r.why) {
        e = aio_warn(m,
                     "weak reachability is incomplete (%s; %llu of %llu objects unreadable): no "
                     "task is reported as kept alive only by weak references",
                     r.why, (unsigned long long)r.failures, (unsigned long long)r.objs.len);
    }
    aio_reach_free(&r);
    return e;
}
