/* Enumeration of GC-tracked objects: the generation lists of an interpreter
 * (and the permanent generation), circular lists through PyGC_Head, which
 * sits 16 bytes before each object in default builds. */
#include "py.h"

/* PyGC_Head is {_gc_next, _gc_prev}; an object follows it. */
#define PY_GC_HEAD_SIZE 16
/* struct gc_generation: {PyGC_Head head; int threshold; int count;}. */
#define PY_GC_GENERATION_SIZE 24
/* The low two bits of _gc_next are flags (collecting, old-space marker). */
#define PY_GC_PTR_MASK (~(uint64_t)3)

/* Calls cb, or cb_gen with the generation, for each object of one list. */
typedef struct py_gc_visit {
    py_gc_cb cb;
    py_gc_gen_cb cb_gen;
    void *ctx;
    int gen;
} py_gc_visit;

static int py_gc_call(const py_gc_visit *v, uint64_t obj) {
    return v->cb ? v->cb(v->ctx, obj) : v->cb_gen(v->ctx, obj, v->gen);
}

static err_t py_gc_walk(py_target *t, uint64_t head, const py_gc_visit *v, uint64_t *budget,
                        bool *truncated) {
    uint64_t p;
    if (mem_read_u64(t->m, head, &p) != ERR_OK) {
        *truncated = true;
        return ERR_OK;
    }
    p &= PY_GC_PTR_MASK;
    util_cycle cycle;
    util_cycle_init(&cycle, p);
    while (p && p != head) {
        if ((*budget)-- == 0) {
            *truncated = true;
            return ERR_OK;
        }
        if (py_gc_call(v, p + PY_GC_HEAD_SIZE)) {
            return ERR_OK;
        }
        uint64_t next;
        if (mem_read_u64(t->m, p, &next) != ERR_OK) {
            *truncated = true;
            return ERR_OK;
        }
        p = next & PY_GC_PTR_MASK;
        if (util_cycle_step(&cycle, p)) {
            /* A loop that misses the head: damaged, or torn by a live read. */
            *truncated = true;
            return ERR_OK;
        }
    }
    if (!p) {
        *truncated = true; /* a circular list never holds NULL */
    }
    return ERR_OK;
}

static err_t py_gc_lists(py_target *t, uint64_t interp, py_gc_visit *v, bool *truncated) {
    const py_layout *L = &t->L;
    uint64_t gc = interp + (uint64_t)L->is_gc;
    uint64_t gen0;
    *truncated = false;
    /* generation0 points at generations[0] in every build, including those
     * whose PyGC_Head alignment moved the array (Debian 3.13). */
    if (mem_read_u64(t->m, gc + (uint64_t)L->gc_generation0, &gen0) != ERR_OK || !gen0) {
        return ERR_READ;
    }
    uint64_t budget = PY_GC_OBJECTS_MAX;
    for (int g = 0; g < L->gc_generations; g++) {
        v->gen = g;
        py_gc_walk(t, gen0 + (uint64_t)g * PY_GC_GENERATION_SIZE, v, &budget, truncated);
    }
    v->gen = PY_GC_PERMANENT;
    return py_gc_walk(t, gc + (uint64_t)L->gc_permanent, v, &budget, truncated);
}

err_t py_gc_each(py_target *t, uint64_t interp, py_gc_cb cb, void *ctx, bool *truncated) {
    py_gc_visit v = {.cb = cb, .ctx = ctx};
    return py_gc_lists(t, interp, &v, truncated);
}

err_t py_gc_each_gen(py_target *t, uint64_t interp, py_gc_gen_cb cb, void *ctx, bool *truncated) {
    py_gc_visit v = {.cb_gen = cb, .ctx = ctx};
    return py_gc_lists(t, interp, &v, truncated);
}
