/* The object graph the reachability passes decide on (src/ana/ana_reach.c):
 * every object on the main interpreter's GC lists with its reference count
 * and the references py_traverse.c and the asyncio types below enumerate,
 * weak references' referents, what threads' frames hold, and each task's
 * object, the future it waits for and its coroutines. What cannot be
 * enumerated only keeps objects alive: its count stays unexplained. */
#include "aio_int.h"

#include <stdio.h>
#include <string.h>

/* Edges kept between two passes (4 bytes each); a heap of 2^26 objects
 * (PY_GC_OBJECTS_MAX) averages far fewer than 16 each. */
#define AIO_REACH_EDGES_MAX (1u << 30)
/* Edges reserved per object before the edge pass: 100k tasks' heaps
 * average 3 (2.4M for 800k objects). The reservation is address space
 * until it is written, and it spares the doubling copies of a growing
 * array (5 % of `check`). */
#define AIO_REACH_EDGES_HINT 4
/* Counts are kept in 32 bits: one this high is above any number of edges
 * (AIO_REACH_EDGES_MAX), so the object stays a root, as its real count
 * would keep it. */
#define AIO_REFCNT_MAX INT32_MAX
/* The directory's pages: 4 KiB hold a few dozen GC objects, so the binary
 * search within one stays in a few cache lines. */
#define AIO_HEAP_PAGE_SHIFT 12
/* Set in an enumerated reference that a weak reference holds (beside
 * PY_REF_BORROWED: objects are 8-aligned). */
#define AIO_REF_WEAK 2u
/* Base classes followed to tell whether a type is a weak reference (a
 * KeyedRef or WeakMethod is a Python subclass of ref: two or three deep). */
#define AIO_REACH_BASES_MAX 16
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
    aio_heap *h;
    py_walker w;
    vec scratch;       /* uint64_t references of one object */
    u64map kinds;      /* type whose traverse py_traverse.c left -> aio_rkind + 1 */
    u64map type_ix;    /* type address -> 1 + index in h->types */
    u64map weak_types; /* type address -> 2 if its instances are weak references, else 1 */
    uint64_t task_traverse, future_traverse, weakref_traverse;
    /* The last type the edge pass met, what the maps said of it: objects
     * in address order come in runs of one type (an allocator pool holds
     * one size), and two hash lookups per object were a tenth of the
     * pass. */
    uint64_t last_type;
    uint32_t last_ix;
    bool last_weak;
} aio_reach;

static void aio_reach_doubt(aio_reach *r, const char *why) {
    if (!r->h->incomplete) {
        r->h->incomplete = why;
    }
}

static int aio_reach_collect(void *ctx, uint64_t obj, int generation) {
    aio_reach *r = ctx;
    aio_heap *h = r->h;
    uint64_t *slot = vec_push(&h->objs);
    uint8_t *flag = slot ? vec_push(&h->flags) : NULL;
    if (!flag) {
        aio_reach_doubt(r, "out of memory");
        return 1;
    }
    *slot = obj;
    *flag = generation == PY_GC_PERMANENT ? AIO_HO_FROZEN : 0;
    return 0;
}

/* The objects sorted by address, and a directory of the pages they start
 * in: an object is found by its page, then by a binary search of that
 * page's few objects. A hash table of every object was 32 to 64 bytes per
 * object (a third of `check`'s memory at 1M tasks, and the kernel zeroed
 * each of its pages); the directory is a few bytes. Sorted, the edge pass
 * also reads the target's heap in address order, page after page. */
static err_t aio_reach_index(aio_reach *r) {
    aio_heap *h = r->h;
    size_t n = h->objs.len;
    uint64_t *keys = h->objs.data;
    err_t e = util_sort_u64(keys, h->flags.data, n) ? ERR_OK : ERR_NOMEM;
    for (size_t i = 0; i < n && e == ERR_OK;) {
        uint64_t page = keys[i] >> AIO_HEAP_PAGE_SHIFT;
        size_t k = i + 1;
        while (k < n && keys[k] >> AIO_HEAP_PAGE_SHIFT == page) {
            if (keys[k] == keys[k - 1]) {
                aio_reach_doubt(r, "an object is twice on the GC lists");
            }
            k++;
        }
        /* The first index and the count each fit 32 bits: the walk stops
         * at PY_GC_OBJECTS_MAX objects. */
        if (!u64map_put(&h->pages, page + 1, (uint64_t)i << 32 | (uint64_t)(k - i))) {
            e = ERR_NOMEM;
        }
        i = k;
    }
    return e;
}

/* Asks for addr's directory slot ahead of aio_heap_find. */
static void aio_heap_prefetch(const aio_heap *h, uint64_t addr) {
    u64map_prefetch(&h->pages, (addr >> AIO_HEAP_PAGE_SHIFT) + 1);
}

uint32_t aio_heap_find(const aio_heap *h, uint64_t addr) {
    uint64_t v;
    if (!u64map_get(&h->pages, (addr >> AIO_HEAP_PAGE_SHIFT) + 1, &v)) {
        return AIO_HEAP_NONE;
    }
    /* The last of the page's objects at or below addr, without branches. */
    const uint64_t *keys = h->objs.data, *at = keys + (size_t)(v >> 32);
    for (size_t len = (size_t)(uint32_t)v; len > 1;) {
        size_t half = len / 2;
        at += at[half] <= addr ? half : 0;
        len -= half;
    }
    return *at == addr ? (uint32_t)(at - keys) : AIO_HEAP_NONE;
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

/* FutureObj_traverse and TaskObj_traverse, field by field per version. A
 * task's fields that only its running would use (its coroutine, the
 * future it waits for, its callbacks and result) come after the others,
 * which someone holding the task can reach without running it: *passive
 * counts those in out. */
static err_t aio_reach_future_refs(aio_reach *r, uint64_t obj, uint64_t type, bool task, vec *out,
                                   size_t *passive) {
    py_target *t = r->c->t;
    const aio_layout *A = &r->c->A;
    const int32_t holder_offs[] = {A->fut_loop, task ? A->task_name : PY_NONE, A->fut_dict};
    const int32_t run_offs[] = {
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
        task ? A->task_context : PY_NONE,
        task ? A->task_coro : PY_NONE,
        task ? A->task_fut_waiter : PY_NONE,
    };
    /* 3.12 made the _asyncio types heap types, whose instances visit them. */
    err_t e = t->L.heap_c_types ? py_ref_push(out, type) : ERR_OK;
    if (e == ERR_OK) {
        e = aio_reach_fields(t, obj, holder_offs, ARRAY_LEN(holder_offs), out);
    }
    if (e == ERR_OK && A->fut_dict == PY_NONE) {
        e = py_managed_dict_refs(&r->w, obj, type, out);
    }
    *passive = out->len;
    return e == ERR_OK ? aio_reach_fields(t, obj, run_offs, ARRAY_LEN(run_offs), out) : e;
}

/* ref, its Python subclasses (KeyedRef, WeakMethod) and the proxies, which
 * share ref's traverse. */
static bool aio_reach_is_weakref(aio_reach *r, uint64_t type) {
    py_target *t = r->c->t;
    uint64_t v;
    if (!r->weakref_traverse) {
        return false;
    }
    if (type && type == r->last_type) {
        return r->last_weak;
    }
    if (u64map_get(&r->weak_types, type, &v)) {
        return v == 2;
    }
    bool weak = false;
    uint64_t k = type;
    for (int depth = 0; k && depth < AIO_REACH_BASES_MAX && !weak; depth++) {
        weak = k == t->types.weakref || py_type_traverse(t, k) == r->weakref_traverse;
        if (mem_read_u64(t->m, k + (uint64_t)t->L.tp_base, &k) != ERR_OK) {
            break;
        }
    }
    u64map_put(&r->weak_types, type, weak ? 2 : 1); /* a lost entry costs time only */
    return weak;
}

/* The references of one object: py_traverse.c's part, then the asyncio
 * base it left; a weak reference's referent last, flagged. *passive is how
 * many of a task's references come before those only its running uses. */
static err_t aio_reach_refs(aio_reach *r, uint64_t obj, uint64_t type, bool *legacy, bool *complete,
                            size_t *passive) {
    py_target *t = r->c->t;
    uint64_t rest;
    r->scratch.len = 0;
    err_t e = py_refs(&r->w, obj, type, &r->scratch, &rest, legacy);
    *complete = !rest;
    *passive = SIZE_MAX;
    if (e == ERR_OK && aio_reach_is_weakref(r, type)) {
        /* ref, KeyedRef, WeakMethod and the proxies share one traverse:
         * live code holding one can still reach the referent. */
        uint64_t referent;
        if (mem_read_u64(t->m, obj + (uint64_t)t->L.wr_object, &referent) != ERR_OK) {
            return ERR_READ;
        }
        if (referent && referent != t->types.none) {
            e = py_ref_push(&r->scratch, referent | AIO_REF_WEAK);
        }
    }
    if (e != ERR_OK || !rest) {
        return e;
    }
    *complete = true;
    static const int32_t iter[] = {AIO_FUTUREITER_FUTURE};
    static const int32_t wrapper[] = {AIO_STEPWRAPPER_TASK, AIO_STEPWRAPPER_ARG};
    bool heap_types = t->L.heap_c_types;
    size_t ignored;
    switch (aio_reach_kind(r, rest)) {
    case AIO_RK_TASK:
        return aio_reach_future_refs(r, obj, type, true, &r->scratch, passive);
    case AIO_RK_FUTURE:
        return aio_reach_future_refs(r, obj, type, false, &r->scratch, &ignored);
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

/* The index of t's type in h->types, its name read once. */
static uint32_t aio_reach_type(aio_reach *r, uint64_t type) {
    aio_heap *h = r->h;
    uint64_t v, key = type ? type : 1; /* 1 is no type's address: the unreadable one */
    if (type && type == r->last_type) {
        return r->last_ix;
    }
    if (u64map_get(&r->type_ix, key, &v)) {
        return (uint32_t)(v - 1);
    }
    aio_heap_type *ht = vec_push(&h->types);
    if (!ht) {
        return AIO_HEAP_NONE;
    }
    ht->addr = type;
    if (!type || py_type_name(r->c->t, type, ht->name, sizeof ht->name) != ERR_OK) {
        snprintf(ht->name, sizeof ht->name, "?");
    }
    if (!u64map_put(&r->type_ix, key, h->types.len)) {
        h->types.len--;
        return AIO_HEAP_NONE;
    }
    return (uint32_t)(h->types.len - 1);
}

/* A model task's passive edge count, on its graph entry: the task is found
 * through the build's task index (aio_index_tasks), only for the objects
 * aio_reach_tasks flagged as tasks. */
static void aio_reach_set_passive(aio_reach *r, uint64_t obj, size_t passive) {
    uint64_t i;
    if (u64map_get(&r->c->task_index, obj, &i) && i < r->h->tasks.len) {
        VEC_AT(&r->h->tasks, aio_heap_task, i)->passive = (uint32_t)passive;
    }
}

/* Counts, types and edges of every object. */
static err_t aio_reach_edges(aio_reach *r) {
    py_target *t = r->c->t;
    aio_heap *h = r->h;
    size_t n = h->objs.len;
    size_t edges_hint = n < AIO_REACH_EDGES_MAX / AIO_REACH_EDGES_HINT ? n * AIO_REACH_EDGES_HINT
                                                                       : AIO_REACH_EDGES_MAX;
    bool reserved = vec_reserve(&h->refcnt, n) && vec_reserve(&h->type, n) &&
                    vec_reserve(&h->edge_start, n + 1) && vec_reserve(&h->edges, edges_hint);
    uint32_t *start = reserved ? vec_push(&h->edge_start) : NULL;
    if (!start) {
        return ERR_NOMEM;
    }
    *start = 0;
    err_t e = ERR_OK;
    for (size_t i = 0; i < n && e == ERR_OK; i++) {
        uint64_t obj = *VEC_AT(&h->objs, uint64_t, i), type = 0;
        uint8_t *flag = VEC_AT(&h->flags, uint8_t, i);
        int32_t *rc = vec_push(&h->refcnt);
        uint32_t *ti = rc ? vec_push(&h->type) : NULL;
        if (!ti) {
            e = ERR_NOMEM;
            break;
        }
        int64_t count = 0;
        uint8_t head[16];
        if (mem_read(t->m, obj, sizeof head, head) != ERR_OK) {
            *flag |= AIO_HO_NOCOUNT | AIO_HO_OPAQUE;
        } else if (!py_refcount_word(t, rd_u64(head, (size_t)t->L.ob_refcnt), &count)) {
            *flag |= AIO_HO_NOCOUNT;
        }
        *rc = count > AIO_REFCNT_MAX ? AIO_REFCNT_MAX : count < 0 ? 0 : (int32_t)count;
        if (!(*flag & AIO_HO_NOCOUNT) && count <= 0) {
            aio_reach_doubt(r, "an object on the GC lists has no reference");
        }
        bool legacy = false, complete;
        size_t passive = SIZE_MAX, kept_passive = 0;
        /* The type is in the head just read (PyObject_HEAD's second word). */
        err_t oe = *flag & AIO_HO_OPAQUE ? ERR_READ : ERR_OK;
        if (oe == ERR_OK && (size_t)t->L.ob_type + 8 <= sizeof head) {
            type = rd_u64(head, (size_t)t->L.ob_type);
        } else if (oe == ERR_OK) {
            oe = py_type_of(t, obj, &type);
        }
        *ti = aio_reach_type(r, oe == ERR_OK ? type : 0);
        if (oe == ERR_OK && type != r->last_type && *ti != AIO_HEAP_NONE) {
            r->last_weak = aio_reach_is_weakref(r, type);
            r->last_ix = *ti;
            r->last_type = type;
        }
        if (oe == ERR_OK) {
            oe = aio_reach_refs(r, obj, type, &legacy, &complete, &passive);
        }
        if (oe == ERR_NOMEM) {
            e = oe;
            break;
        }
        if (oe != ERR_OK) {
            /* Opaque: nothing of it is subtracted, so what it holds looks
             * referenced from outside, which only keeps things alive. */
            *flag |= AIO_HO_OPAQUE;
            h->opaque++;
            r->scratch.len = 0;
        }
        if (legacy) {
            *flag |= AIO_HO_LEGACY;
        }
        for (size_t k = 0; k < r->scratch.len; k++) {
            aio_heap_prefetch(h, *VEC_AT(&r->scratch, uint64_t, k) &
                                     ~(uint64_t)(PY_REF_BORROWED | AIO_REF_WEAK));
        }
        for (size_t k = 0; k < r->scratch.len && e == ERR_OK; k++) {
            uint64_t ref = *VEC_AT(&r->scratch, uint64_t, k);
            uint32_t j = aio_heap_find(h, ref & ~(uint64_t)(PY_REF_BORROWED | AIO_REF_WEAK));
            if (j == AIO_HEAP_NONE) {
                continue; /* untracked: no part in a cycle, holds no tracked object */
            }
            if (h->edges.len >= AIO_REACH_EDGES_MAX) {
                aio_reach_doubt(r, "too many references");
                e = ERR_LIMIT;
                break;
            }
            uint32_t *edge = vec_push(&h->edges);
            if (!edge) {
                e = ERR_NOMEM;
                break;
            }
            *edge = j | (ref & PY_REF_BORROWED ? AIO_EDGE_BORROWED : 0) |
                    (ref & AIO_REF_WEAK ? AIO_EDGE_WEAK : 0);
            kept_passive += k < passive;
        }
        if (e == ERR_OK && passive != SIZE_MAX && (*flag & AIO_HO_TASK)) {
            aio_reach_set_passive(r, obj, kept_passive);
        }
        if (e == ERR_OK && !(start = vec_push(&h->edge_start))) {
            e = ERR_NOMEM;
        }
        if (e == ERR_OK) {
            *start = (uint32_t)h->edges.len;
        }
    }
    return e;
}

static bool aio_u32_push(vec *v, uint32_t x) {
    uint32_t *slot = vec_push(v);
    if (slot) {
        *slot = x;
    }
    return slot != NULL;
}

static err_t aio_reach_root(aio_reach *r, uint64_t ref) {
    uint32_t i = aio_heap_find(r->h, ref & ~(uint64_t)PY_REF_BORROWED);
    if (i == AIO_HEAP_NONE) {
        return ERR_OK;
    }
    return aio_u32_push(&r->h->extra_roots, i) ? ERR_OK : ERR_NOMEM;
}

/* Flags the weakrefs the task registries' sets hold (AIO_HO_REGISTRY). */
static void aio_reach_registries(aio_reach *r) {
    aio_heap *h = r->h;
    const u64set *sets = &r->c->registry_sets;
    for (size_t k = 0; k < sets->cap; k++) {
        uint32_t i = sets->keys[k] ? aio_heap_find(h, sets->keys[k]) : AIO_HEAP_NONE;
        if (i == AIO_HEAP_NONE) {
            continue;
        }
        uint32_t from = *VEC_AT(&h->edge_start, uint32_t, i);
        uint32_t to = *VEC_AT(&h->edge_start, uint32_t, i + 1);
        for (uint32_t j = from; j < to; j++) {
            uint32_t ref = *VEC_AT(&h->edges, uint32_t, j) & AIO_EDGE_INDEX;
            *VEC_AT(&h->flags, uint8_t, ref) |= AIO_HO_REGISTRY;
        }
    }
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
            if (!aio_frame_function(f) || !f->addr) {
                continue; /* unreadable: its strong references are counted */
            }
            r->scratch.len = 0;
            if (py_frame_all_slots(&r->w, f->addr, &r->scratch) == ERR_NOMEM) {
                return ERR_NOMEM;
            }
            for (size_t s = 0; s < r->scratch.len && e == ERR_OK; s++) {
                e = aio_reach_root(r, *VEC_AT(&r->scratch, uint64_t, s));
            }
        }
    }
    const int32_t interp_roots[] = {t->L.is_sysdict, t->L.is_builtins, t->L.is_modules};
    for (size_t i = 0; i < ARRAY_LEN(interp_roots) && e == ERR_OK; i++) {
        uint64_t v;
        if (interp_roots[i] != PY_NONE &&
            mem_read_u64(t->m, c->interp + (uint64_t)interp_roots[i], &v) == ERR_OK) {
            e = aio_reach_root(r, v);
        }
    }
    return e;
}

/* Each task's object, the future its step waits for and its coroutines. */
static err_t aio_reach_tasks(aio_reach *r) {
    aio_heap *h = r->h;
    const aio_model *m = r->c->model;
    for (size_t i = 0; i < m->tasks.len; i++) {
        const aio_task *task = VEC_AT(&m->tasks, aio_task, i);
        aio_heap_task *ht = vec_push(&h->tasks);
        if (!ht) {
            return ERR_NOMEM;
        }
        ht->obj = aio_heap_find(h, task->id);
        if (ht->obj != AIO_HEAP_NONE) {
            *VEC_AT(&h->flags, uint8_t, ht->obj) |= AIO_HO_TASK;
        }
        ht->passive = 0;
        ht->wake = task->fut_waiter ? aio_heap_find(h, task->fut_waiter) : AIO_HEAP_NONE;
        ht->chain = (uint32_t)h->chain.len;
        for (size_t k = 0; k < task->nchain; k++) {
            uint32_t j = aio_heap_find(h, *VEC_AT(&m->chains, uint64_t, task->chain_at + k));
            if (j != AIO_HEAP_NONE && !aio_u32_push(&h->chain, j)) {
                return ERR_NOMEM;
            }
        }
        ht->nchain = (uint32_t)(h->chain.len - ht->chain);
    }
    return ERR_OK;
}

static void aio_reach_free(aio_reach *r) {
    py_walker_free(&r->w);
    vec_free(&r->scratch);
    u64map_free(&r->kinds);
    u64map_free(&r->type_ix);
    u64map_free(&r->weak_types);
}

void aio_heap_free(aio_heap *h) {
    vec_free(&h->objs);
    vec_free(&h->refcnt);
    util_free(h->external);
    vec_free(&h->flags);
    vec_free(&h->type);
    vec_free(&h->edge_start);
    vec_free(&h->edges);
    vec_free(&h->extra_roots);
    vec_free(&h->tasks);
    vec_free(&h->chain);
    vec_free(&h->types);
    u64map_free(&h->pages);
    memset(h, 0, sizeof *h);
}

static void aio_heap_init(aio_heap *h) {
    memset(h, 0, sizeof *h);
    vec_init(&h->objs, sizeof(uint64_t));
    vec_init(&h->refcnt, sizeof(int32_t));
    vec_init(&h->flags, sizeof(uint8_t));
    vec_init(&h->type, sizeof(uint32_t));
    vec_init(&h->edge_start, sizeof(uint32_t));
    vec_init(&h->edges, sizeof(uint32_t));
    vec_init(&h->extra_roots, sizeof(uint32_t));
    vec_init(&h->tasks, sizeof(aio_heap_task));
    vec_init(&h->chain, sizeof(uint32_t));
    vec_init(&h->types, sizeof(aio_heap_type));
}

static bool aio_reach_any_pending(const aio_model *m) {
    for (size_t i = 0; i < m->tasks.len; i++) {
        if (VEC_AT(&m->tasks, aio_task, i)->state == AIO_STATE_PENDING) {
            return true;
        }
    }
    return false;
}

static err_t aio_reach_init(aio_reach *r, aio_ctx *c, aio_heap *h) {
    memset(r, 0, sizeof *r);
    r->c = c;
    r->h = h;
    vec_init(&r->scratch, sizeof(uint64_t));
    err_t e = py_walker_init(&r->w, c->t, c->interp);
    if (e == ERR_OK && !r->w.subtype_traverse) {
        /* Without it no Python object is traversed: every task would look
         * alive, which is safe but says nothing. */
        aio_reach_doubt(r, "the traverse of Python classes was not found");
    }
    r->task_traverse = py_type_traverse(c->t, aio_reach_type_attr(c, "Task"));
    r->future_traverse = py_type_traverse(c->t, aio_reach_type_attr(c, "Future"));
    r->weakref_traverse = c->t->types.weakref ? py_type_traverse(c->t, c->t->types.weakref) : 0;
    return e;
}

err_t aio_reach_each_refs(aio_ctx *c, const uint64_t *objs, size_t n, aio_refs_cb cb, void *ctx) {
    aio_reach r;
    aio_heap h;
    aio_heap_init(&h);
    err_t e = aio_reach_init(&r, c, &h);
    for (size_t i = 0; i < n && e == ERR_OK; i++) {
        uint64_t type;
        bool legacy, complete = false;
        size_t passive;
        err_t oe = py_type_of(c->t, objs[i], &type);
        if (oe == ERR_OK) {
            oe = aio_reach_refs(&r, objs[i], type, &legacy, &complete, &passive);
        }
        if (oe == ERR_NOMEM) {
            e = oe;
        } else {
            /* The collector's view: weak referents are not references. */
            size_t keep = 0;
            for (size_t k = 0; k < r.scratch.len; k++) {
                uint64_t ref = *VEC_AT(&r.scratch, uint64_t, k);
                if (!(ref & AIO_REF_WEAK)) {
                    *VEC_AT(&r.scratch, uint64_t, keep++) = ref;
                }
            }
            r.scratch.len = keep;
            cb(ctx, objs[i], oe, &r.scratch, complete);
        }
        r.scratch.len = 0;
    }
    aio_reach_free(&r);
    aio_heap_free(&h);
    return e;
}

/* update_refs and subtract_refs: what keeps a positive count once the
 * references from tracked objects are taken off is referenced from outside
 * them. Weak and borrowed references own no count. The counts are
 * subtracted in place and given back. */
static err_t aio_reach_external(aio_heap *h) {
    size_t n = h->objs.len;
    const uint8_t *flags = h->flags.data;
    int32_t *gc = h->refcnt.data;
    h->external = util_calloc(n / 64 + 1, sizeof *h->external);
    if (!h->external) {
        return ERR_NOMEM;
    }
    const uint32_t *edges = h->edges.data;
    for (size_t k = 0; k < h->edges.len; k++) {
        if (!(edges[k] & (AIO_EDGE_BORROWED | AIO_EDGE_WEAK))) {
            gc[edges[k] & AIO_EDGE_INDEX]--;
        }
    }
    for (size_t i = 0; i < n; i++) {
        bool nocount = flags[i] & AIO_HO_NOCOUNT;
        if (gc[i] < 0 && !nocount && !h->count_doubt) {
            /* More references than the object has: what was read does not
             * add up (damage, or a target that moved). */
            h->count_doubt = "reference counts do not add up";
        }
        if (nocount || gc[i] > 0) {
            h->external[i / 64] |= (uint64_t)1 << (i % 64);
        }
    }
    vec_free(&h->refcnt);
    return ERR_OK;
}

err_t aio_reachability(aio_ctx *c) {
    aio_model *m = c->model;
    aio_heap *h = &m->heap;
    aio_heap_free(h);
    aio_heap_init(h);
    if (!aio_reach_any_pending(m)) {
        return ERR_OK; /* nothing to decide */
    }
    aio_reach r;
    err_t e = aio_reach_init(&r, c, h);
    bool truncated = false;
    if (c->t->L.free_threaded) {
        /* No PyGC_Head lists and split counts: nothing here would hold. */
        aio_reach_doubt(&r, "free-threaded builds are not supported");
    }
    if (e == ERR_OK && !h->incomplete) {
        e = py_gc_each_gen(c->t, c->interp, aio_reach_collect, &r, &truncated);
        if (e == ERR_READ) {
            aio_reach_doubt(&r, "the GC lists are unreadable");
            e = ERR_OK;
        } else if (truncated) {
            aio_reach_doubt(&r, "the GC lists are damaged or too long");
        }
    }
    if (e == ERR_OK && !h->incomplete) {
        e = aio_reach_index(&r);
    }
    if (e == ERR_OK && !h->incomplete) {
        e = aio_reach_tasks(&r);
    }
    if (e == ERR_OK && !h->incomplete) {
        e = aio_reach_edges(&r);
    }
    if (e == ERR_OK && !h->incomplete) {
        aio_reach_registries(&r);
        e = aio_reach_extra_roots(&r);
    }
    if (e == ERR_OK && !h->incomplete) {
        e = aio_reach_external(h);
    }
    if (e == ERR_LIMIT) {
        e = ERR_OK; /* the doubt says which limit */
    }
    h->built = e == ERR_OK && !h->incomplete;
    if (e == ERR_OK && h->incomplete) {
        e = aio_warn(m,
                     "the object graph is incomplete (%s, after %zu objects): no task is "
                     "reported as stuck or as kept alive only by weak references",
                     h->incomplete, (size_t)h->objs.len);
    }
    aio_reach_free(&r);
    return e;
}
