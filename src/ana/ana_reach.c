/* The two passes over the target's object graph (model->heap, read by
 * src/aio/aio_reach.c). The collector's replay: update_refs, subtract_refs
 * and move_unreachable as CPython's full collection runs them, so that a
 * pending task it would destroy is `weak-pending-task`. And Go's
 * goroutine-leak idea (golang/go#74609) for asyncio: mark what can still
 * run reaches, never entering a blocked task's own coroutines; a blocked
 * task whose future gets marked can run, so mark from it too, to a
 * fixpoint. Blocked tasks left unmarked are stuck for good. What the graph
 * cannot explain (a count beyond the references read, an unreadable object)
 * keeps things alive: never a false alarm. Reads no memory. */
#include "ana_int.h"

#include <stdio.h>
#include <string.h>

/* Objects that still reference one stuck wait, listed in its detail. */
#define ANA_REFERRERS_MAX 6
/* Details (one per waited-on resource) of one stuck finding. */
#define ANA_DETAILS_MAX 8
/* Owner of an object (ana_reach's owner array): a task's own object, or one
 * of its coroutines, by task index. */
#define ANA_OWN_TASKOBJ 0x80000000u
#define ANA_OWN_INDEX 0x7fffffffu

typedef struct ana_reach {
    const aio_model *m;
    const aio_heap *h;
    size_t n;        /* objects */
    uint8_t *mark;   /* per object */
    uint32_t *owner; /* per object: task index | ANA_OWN_TASKOBJ, or AIO_HEAP_NONE */
    uint8_t *active; /* per task: can run (the fixpoint reached it) */
    /* The blocked tasks by the future each waits for: object index << 32
     * | task index, sorted; a bit per object says whether any task waits
     * for it, so that marking an object looks no further for most. A hash
     * table from object to task was 50 MB at a million tasks. */
    uint64_t *wakes;
    size_t nwakes;
    uint64_t *waited;   /* per object, one bit */
    uint32_t *dep_head; /* per task: 1 + first task that awaits it, 0 if none */
    uint32_t *dep_next;
    u64set finished; /* 1 + object index of each finished task */
    vec stack;       /* uint32_t objects to expand */
    vec tstack;      /* uint32_t tasks to activate */
} ana_reach;

static const uint32_t *ana_edges(const aio_heap *h, uint32_t i, uint32_t *n) {
    uint32_t from = *VEC_AT(&h->edge_start, uint32_t, i);
    *n = *VEC_AT(&h->edge_start, uint32_t, i + 1) - from;
    return (const uint32_t *)h->edges.data + from;
}

static bool ana_push32(vec *v, uint32_t x) {
    uint32_t *slot = vec_push(v);
    if (slot) {
        *slot = x;
    }
    return slot != NULL;
}

static void ana_reach_free(ana_reach *r) {
    util_free(r->mark);
    util_free(r->owner);
    util_free(r->active);
    util_free(r->wakes);
    util_free(r->waited);
    util_free(r->dep_head);
    util_free(r->dep_next);
    u64set_free(&r->finished);
    vec_free(&r->stack);
    vec_free(&r->tstack);
}

/* An object referenced from outside the graph, or whose count says nothing. */
static bool ana_counted_root(const ana_reach *r, size_t i) {
    return r->h->external[i / 64] >> (i % 64) & 1;
}

static err_t ana_mark_plain(ana_reach *r, uint32_t i) {
    if (r->mark[i]) {
        return ERR_OK;
    }
    r->mark[i] = 1;
    return ana_push32(&r->stack, i) ? ERR_OK : ERR_NOMEM;
}

/* move_unreachable: what the roots reach through strong references lives. */
static err_t ana_weak_pass(ana_reach *r, ana_result *out) {
    const aio_heap *h = r->h;
    const uint8_t *flags = h->flags.data;
    err_t e = ERR_OK;
    for (size_t i = 0; i < r->n && e == ERR_OK; i++) {
        if (ana_counted_root(r, i) || (flags[i] & (AIO_HO_FROZEN | AIO_HO_LEGACY))) {
            out->reach_roots++;
            e = ana_mark_plain(r, (uint32_t)i);
        }
    }
    for (size_t k = 0; k < h->extra_roots.len && e == ERR_OK; k++) {
        uint32_t i = *VEC_AT(&h->extra_roots, uint32_t, k);
        out->reach_roots += !r->mark[i];
        e = ana_mark_plain(r, i);
    }
    while (e == ERR_OK && r->stack.len) {
        uint32_t i = *VEC_AT(&r->stack, uint32_t, --r->stack.len), n;
        const uint32_t *edges = ana_edges(h, i, &n);
        for (uint32_t k = 0; k < n && e == ERR_OK; k++) {
            if (!(edges[k] & AIO_EDGE_WEAK)) {
                e = ana_mark_plain(r, edges[k] & AIO_EDGE_INDEX);
            }
        }
    }
    for (size_t i = 0; i < r->m->tasks.len && e == ERR_OK; i++) {
        const aio_task *t = VEC_AT(&r->m->tasks, aio_task, i);
        uint32_t obj = VEC_AT(&h->tasks, aio_heap_task, i)->obj;
        if (t->state == AIO_STATE_PENDING && obj != AIO_HEAP_NONE && !r->mark[obj]) {
            out->task_flags[i] |= ANA_TASK_WEAK;
        }
    }
    return e;
}

/* A finished task runs nothing again: its object is data (a result, an
 * exception whose traceback holds its last frame), followed like any other
 * object when something reaches it, and no root. Its done callbacks, if any
 * are still to run, sit in the loop's ready queue, which is reached. */
static bool ana_finished(const aio_task *t) {
    return t->state == AIO_STATE_DONE || t->state == AIO_STATE_CANCELLED;
}

/* A task that waits for nothing the graph can name runs, or may: a root
 * (so is one whose state could not be read). */
static bool ana_may_run(const aio_heap_task *ht, const aio_task *t) {
    return t->state != AIO_STATE_PENDING || t->running_thread || t->waits_kind == AIO_KIND_NONE ||
           ht->obj == AIO_HEAP_NONE || ht->wake == AIO_HEAP_NONE;
}

/* Tasks an armed timer will cancel (asyncio.timeout, wait_for): they run
 * again when it fires, whatever they wait on. */
static err_t ana_timed_tasks(const aio_model *m, u64set *out) {
    for (size_t i = 0; i < m->resources.len; i++) {
        const aio_resource *res = VEC_AT(&m->resources, aio_resource, i);
        if (res->kind != AIO_KIND_TIMEOUT || !res->has_deadline) {
            continue;
        }
        for (size_t k = 0; k < res->members.len; k++) {
            if (u64set_add(out, *VEC_AT(&res->members, uint64_t, k)) < 0) {
                return ERR_NOMEM;
            }
        }
    }
    return ERR_OK;
}

/* Marks an object for the stuck pass; a future some blocked task waits
 * for makes that task runnable. */
static err_t ana_mark(ana_reach *r, uint32_t i) {
    if (r->mark[i]) {
        return ERR_OK;
    }
    r->mark[i] = 1;
    if (!ana_push32(&r->stack, i)) {
        return ERR_NOMEM;
    }
    if (!(r->waited[i / 64] >> (i % 64) & 1)) {
        return ERR_OK;
    }
    /* The first wake at or past object i's, then its tasks, the last
     * first (the order the tasks were pushed in before). */
    size_t lo = 0, hi = r->nwakes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->wakes[mid] >> 32 < i) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    size_t end = lo;
    while (end < r->nwakes && r->wakes[end] >> 32 == i) {
        end++;
    }
    for (size_t k = end; k-- > lo;) {
        uint32_t t = (uint32_t)r->wakes[k];
        if (!r->active[t] && !ana_push32(&r->tstack, t)) {
            return ERR_NOMEM;
        }
    }
    return ERR_OK;
}

/* A task that can run: its object whole, its coroutines, and the tasks
 * that await it (they wake when it finishes). */
static err_t ana_activate(ana_reach *r, uint32_t t) {
    if (r->active[t]) {
        return ERR_OK;
    }
    r->active[t] = 1;
    const aio_heap *h = r->h;
    const aio_heap_task *ht = VEC_AT(&h->tasks, aio_heap_task, t);
    err_t e = ERR_OK;
    if (ht->obj != AIO_HEAP_NONE) {
        /* Expanded again, whole this time, if it was already marked. */
        r->mark[ht->obj] = 1;
        e = ana_push32(&r->stack, ht->obj) ? ERR_OK : ERR_NOMEM;
    }
    for (uint32_t k = 0; k < ht->nchain && e == ERR_OK; k++) {
        uint32_t c = *VEC_AT(&h->chain, uint32_t, ht->chain + k);
        r->mark[c] = 1;
        e = ana_push32(&r->stack, c) ? ERR_OK : ERR_NOMEM;
    }
    for (uint32_t d = r->dep_head[t]; d && e == ERR_OK; d = r->dep_next[d - 1]) {
        e = r->active[d - 1] || ana_push32(&r->tstack, d - 1) ? ERR_OK : ERR_NOMEM;
    }
    return e;
}

/* The edges of object i that marking may follow now: none of a blocked
 * task's coroutine, and of a blocked task's object only those that do not
 * run it (someone holding a task can cancel it, not finish it). */
static uint32_t ana_followed(const ana_reach *r, uint32_t i, uint32_t n) {
    uint32_t own = r->owner[i];
    if (own == AIO_HEAP_NONE || r->active[own & ANA_OWN_INDEX]) {
        return n;
    }
    if (!(own & ANA_OWN_TASKOBJ)) {
        return 0;
    }
    uint32_t passive = VEC_AT(&r->h->tasks, aio_heap_task, own & ANA_OWN_INDEX)->passive;
    return passive < n ? passive : n;
}

static err_t ana_stuck_setup(ana_reach *r) {
    const aio_model *m = r->m;
    const aio_heap *h = r->h;
    size_t nt = m->tasks.len;
    for (size_t i = 0; i < r->n; i++) {
        r->owner[i] = AIO_HEAP_NONE;
    }
    for (size_t t = 0; t < nt; t++) {
        const aio_heap_task *ht = VEC_AT(&h->tasks, aio_heap_task, t);
        if (ana_finished(VEC_AT(&m->tasks, aio_task, t))) {
            /* Owned by no task: plain data. */
            if (ht->obj != AIO_HEAP_NONE && u64set_add(&r->finished, (uint64_t)ht->obj + 1) < 0) {
                return ERR_NOMEM;
            }
            continue;
        }
        if (ht->obj != AIO_HEAP_NONE) {
            r->owner[ht->obj] = (uint32_t)t | ANA_OWN_TASKOBJ;
        }
        for (uint32_t k = 0; k < ht->nchain; k++) {
            r->owner[*VEC_AT(&h->chain, uint32_t, ht->chain + k)] = (uint32_t)t;
        }
    }
    u64set timed;
    u64set_init(&timed);
    err_t e = ana_timed_tasks(m, &timed);
    for (size_t t = 0; t < nt && e == ERR_OK; t++) {
        const aio_heap_task *ht = VEC_AT(&h->tasks, aio_heap_task, t);
        const aio_task *task = VEC_AT(&m->tasks, aio_task, t);
        if (ana_finished(task)) {
            continue;
        }
        if (ana_may_run(ht, task) || u64set_has(&timed, task->id)) {
            e = ana_push32(&r->tstack, (uint32_t)t) ? ERR_OK : ERR_NOMEM;
            continue;
        }
        uint32_t own = r->owner[ht->wake];
        if (own != AIO_HEAP_NONE && (own & ANA_OWN_TASKOBJ)) {
            /* It awaits a task: that task finishing wakes it, not someone
             * merely holding it. (One that has finished is owned by no
             * task: reaching it, as the ready queue's wake-up does, wakes
             * this one, as for a future.) */
            uint32_t u = own & ANA_OWN_INDEX;
            r->dep_next[t] = r->dep_head[u];
            r->dep_head[u] = (uint32_t)t + 1;
            continue;
        }
        r->wakes[r->nwakes++] = (uint64_t)ht->wake << 32 | (uint64_t)t;
        r->waited[ht->wake / 64] |= (uint64_t)1 << (ht->wake % 64);
    }
    u64set_free(&timed);
    if (e == ERR_OK && !util_sort_u64(r->wakes, NULL, r->nwakes)) {
        e = ERR_NOMEM;
    }
    return e;
}

/* Roots: what something outside the graph holds (thread frames, C code,
 * the interpreter), what threads' frames hold, and the tasks that run. */
static err_t ana_stuck_pass(ana_reach *r, ana_result *out) {
    const aio_heap *h = r->h;
    const uint8_t *flags = h->flags.data;
    if (r->n) {
        memset(r->mark, 0, r->n);
    }
    r->stack.len = 0;
    err_t e = ana_stuck_setup(r);
    for (size_t i = 0; i < r->n && e == ERR_OK; i++) {
        if (ana_counted_root(r, i)) {
            e = ana_mark(r, (uint32_t)i);
        }
    }
    for (size_t k = 0; k < h->extra_roots.len && e == ERR_OK; k++) {
        e = ana_mark(r, *VEC_AT(&h->extra_roots, uint32_t, k));
    }
    while (e == ERR_OK && (r->tstack.len || r->stack.len)) {
        if (r->tstack.len) {
            e = ana_activate(r, *VEC_AT(&r->tstack, uint32_t, --r->tstack.len));
            continue;
        }
        uint32_t i = *VEC_AT(&r->stack, uint32_t, --r->stack.len), n;
        const uint32_t *edges = ana_edges(h, i, &n);
        n = ana_followed(r, i, n);
        bool registry = flags[i] & AIO_HO_REGISTRY;
        for (uint32_t k = 0; k < n && e == ERR_OK; k++) {
            uint32_t j = edges[k] & AIO_EDGE_INDEX;
            /* all_tasks() hands out pending tasks only: a finished task
             * (its exception, the traceback's frames and their locals) is
             * not reached through the registry. */
            if (!(registry && (edges[k] & AIO_EDGE_WEAK) &&
                  u64set_has(&r->finished, (uint64_t)j + 1))) {
                e = ana_mark(r, j);
            }
        }
    }
    for (size_t t = 0; t < r->m->tasks.len && e == ERR_OK; t++) {
        const aio_heap_task *ht = VEC_AT(&h->tasks, aio_heap_task, t);
        if (!r->active[t] && VEC_AT(&r->m->tasks, aio_task, t)->state == AIO_STATE_PENDING) {
            out->task_flags[t] |= ANA_TASK_STUCK;
            if (ht->obj != AIO_HEAP_NONE && r->mark[ht->obj]) {
                out->task_flags[t] |= ANA_TASK_CANCELLABLE;
            }
        }
    }
    return e;
}

err_t ana_reach_verdicts(ana_ctx *c) {
    const aio_model *m = c->g.m;
    const aio_heap *h = &m->heap;
    ana_result *out = c->out;
    if (!h->built) {
        return ERR_OK; /* the build said why, in a warning */
    }
    ana_reach r;
    memset(&r, 0, sizeof r);
    r.m = m;
    r.h = h;
    r.n = h->objs.len;
    out->reach_objects = r.n;
    size_t nt = m->tasks.len;
    vec_init(&r.stack, sizeof(uint32_t));
    vec_init(&r.tstack, sizeof(uint32_t));
    out->task_flags = util_calloc(nt + 1, 1);
    err_t e = out->task_flags ? ERR_OK : ERR_NOMEM;
    if (e == ERR_OK && h->tasks.len != nt) {
        out->reach_doubt = "the object graph does not match the tasks";
    }
    if (e == ERR_OK && !out->reach_doubt) {
        out->reach_doubt = h->count_doubt;
    }
    r.mark = util_calloc(r.n + 1, 1);
    r.owner = util_alloc((r.n + 1) * sizeof *r.owner);
    r.active = util_calloc(nt + 1, 1);
    r.wakes = util_alloc((nt + 1) * sizeof *r.wakes);
    r.waited = util_calloc(r.n / 64 + 1, sizeof *r.waited);
    r.dep_head = util_calloc(nt + 1, sizeof *r.dep_head);
    r.dep_next = util_calloc(nt + 1, sizeof *r.dep_next);
    if (e == ERR_OK &&
        !(r.mark && r.owner && r.active && r.wakes && r.waited && r.dep_head && r.dep_next)) {
        e = ERR_NOMEM;
    }
    if (e == ERR_OK && !out->reach_doubt) {
        e = ana_weak_pass(&r, out);
        out->weak_known = e == ERR_OK;
    }
    if (e == ERR_OK && !out->reach_doubt) {
        e = ana_stuck_pass(&r, out);
        out->stuck_known = e == ERR_OK;
    }
    if ((e != ERR_OK || out->reach_doubt) && out->task_flags) {
        memset(out->task_flags, 0, nt);
        out->weak_known = out->stuck_known = false;
    }
    ana_reach_free(&r);
    return e;
}

/* ---- The stuck findings: groups of stuck tasks tied by what they wait
 * on, each wait with what still references it. */

typedef struct ana_stuck {
    ana_ctx *c;
    const aio_heap *h;
    u64map target;   /* 1 + object index -> 1 + slot in refs: the waits described */
    vec refs;        /* uint32_t, ANA_REFERRERS_MAX per slot, AIO_HEAP_NONE padded */
    u64map hop;      /* 1 + referrer object index -> 1 + slot in hop_refs */
    vec hop_refs;    /* uint32_t, one per hop slot: a coroutine referencing that referrer */
    uint32_t *owner; /* per object: task index | ANA_OWN_TASKOBJ, or AIO_HEAP_NONE */
    /* Per object, one bit each: a key of target, of hop. The passes over
     * every edge test the bit before probing the map: a million tasks'
     * heap has 22 million edges, and a probe each was a tenth of the
     * analysis; the bits are 1 MB the processor's caches keep. */
    uint64_t *target_bits, *hop_bits;
    uint32_t *parent; /* union-find over tasks (by index) */
} ana_stuck;

static uint32_t ana_find(uint32_t *p, uint32_t x) {
    while (p[x] != x) {
        p[x] = p[p[x]];
        x = p[x];
    }
    return x;
}

static void ana_union(uint32_t *p, uint32_t a, uint32_t b) {
    a = ana_find(p, a);
    b = ana_find(p, b);
    if (a != b) {
        p[a < b ? b : a] = a < b ? a : b;
    }
}

static inline bool ana_bit(const uint64_t *bits, uint32_t i) {
    return (bits[i / 64] >> (i % 64)) & 1;
}

static inline void ana_set_bit(uint64_t *bits, uint32_t i) {
    bits[i / 64] |= (uint64_t)1 << (i % 64);
}

/* One pass over every edge: up to ANA_REFERRERS_MAX objects referencing
 * each target. */
static err_t ana_collect_referrers(ana_stuck *s) {
    const aio_heap *h = s->h;
    for (uint32_t i = 0; i + 1 < h->edge_start.len; i++) {
        uint32_t n;
        const uint32_t *edges = ana_edges(h, i, &n);
        for (uint32_t k = 0; k < n; k++) {
            uint64_t slot;
            uint32_t to = edges[k] & AIO_EDGE_INDEX;
            if (!ana_bit(s->target_bits, to) || !u64map_get(&s->target, (uint64_t)to + 1, &slot)) {
                continue;
            }
            uint32_t *refs = (uint32_t *)s->refs.data + (slot - 1) * ANA_REFERRERS_MAX;
            for (size_t j = 0; j < ANA_REFERRERS_MAX; j++) {
                if (refs[j] == i) {
                    break;
                }
                if (refs[j] == AIO_HEAP_NONE) {
                    refs[j] = i;
                    break;
                }
            }
        }
    }
    return ERR_OK;
}

/* The referrers that are not a task's coroutine: which coroutine, if any,
 * references each of them (an object a task's frame holds). */
static err_t ana_collect_hops(ana_stuck *s) {
    const aio_heap *h = s->h;
    for (size_t k = 0; k < s->refs.len; k++) {
        uint32_t ref = *VEC_AT(&s->refs, uint32_t, k);
        uint64_t v;
        if (ref == AIO_HEAP_NONE || s->owner[ref] != AIO_HEAP_NONE ||
            u64map_get(&s->hop, (uint64_t)ref + 1, &v)) {
            continue;
        }
        if (!ana_push32(&s->hop_refs, AIO_HEAP_NONE) ||
            !u64map_put(&s->hop, (uint64_t)ref + 1, s->hop_refs.len)) {
            return ERR_NOMEM;
        }
        ana_set_bit(s->hop_bits, ref);
    }
    if (!s->hop.count) {
        return ERR_OK;
    }
    for (uint32_t i = 0; i + 1 < h->edge_start.len; i++) {
        if (s->owner[i] == AIO_HEAP_NONE || (s->owner[i] & ANA_OWN_TASKOBJ)) {
            continue; /* only coroutines: "held by task X's frame" */
        }
        uint32_t n;
        const uint32_t *edges = ana_edges(h, i, &n);
        for (uint32_t k = 0; k < n; k++) {
            uint64_t slot;
            uint32_t to = edges[k] & AIO_EDGE_INDEX;
            if (ana_bit(s->hop_bits, to) && u64map_get(&s->hop, (uint64_t)to + 1, &slot) &&
                *VEC_AT(&s->hop_refs, uint32_t, slot - 1) == AIO_HEAP_NONE) {
                *VEC_AT(&s->hop_refs, uint32_t, slot - 1) = i;
            }
        }
    }
    return ERR_OK;
}

static const char *ana_type_name(const aio_heap *h, uint32_t obj) {
    uint32_t ti = *VEC_AT(&h->type, uint32_t, obj);
    return ti < h->types.len ? VEC_AT(&h->types, aio_heap_type, ti)->name : "?";
}

/* The task whose coroutine is obj, or whose coroutine holds obj; -1 if none. */
static int64_t ana_holding_task(const ana_stuck *s, uint32_t obj) {
    uint32_t own = s->owner[obj];
    if (own != AIO_HEAP_NONE) {
        return own & ANA_OWN_TASKOBJ ? -1 : (int64_t)(own & ANA_OWN_INDEX);
    }
    uint64_t slot;
    if (u64map_get(&s->hop, (uint64_t)obj + 1, &slot)) {
        uint32_t coro = *VEC_AT(&s->hop_refs, uint32_t, slot - 1);
        if (coro != AIO_HEAP_NONE) {
            return (int64_t)(s->owner[coro] & ANA_OWN_INDEX);
        }
    }
    return -1;
}

/* ", only the frames of 'a' and 'b' (through a Service object) and a dict
 * object nothing able to run reaches, none of which can run": the
 * referrers of one wait, each stuck task and each other type once. */
static void ana_referrers(const ana_stuck *s, sbuf *b, const uint32_t *refs) {
    const ana_graph *g = &s->c->g;
    int64_t tasks[ANA_REFERRERS_MAX];
    const char *via = NULL, *others[ANA_REFERRERS_MAX];
    size_t nt = 0, no = 0;
    for (size_t j = 0; j < ANA_REFERRERS_MAX && refs[j] != AIO_HEAP_NONE; j++) {
        uint32_t own = s->owner[refs[j]];
        if (own != AIO_HEAP_NONE && (own & ANA_OWN_TASKOBJ)) {
            continue; /* a task's fut_waiter: its own wait */
        }
        int64_t t = ana_holding_task(s, refs[j]);
        const char *type = t >= 0 && own != AIO_HEAP_NONE ? NULL : ana_type_name(s->h, refs[j]);
        size_t k = 0;
        if (t >= 0) {
            while (k < nt && tasks[k] != t) {
                k++;
            }
            tasks[k == nt ? nt++ : k] = t;
            /* The object that tells: a Service, not the bound method or
             * the cell that leads to it. */
            if (type && (!via || strcmp(via, "method") == 0 || strcmp(via, "cell") == 0)) {
                via = type;
            }
        } else {
            while (k < no && strcmp(others[k], type) != 0) {
                k++;
            }
            others[k == no ? no++ : k] = type;
        }
    }
    if (!nt && !no) {
        return;
    }
    sbuf_adds(b, ", only ");
    for (size_t k = 0; k < nt; k++) {
        sbuf_adds(b, k         ? (k + 1 == nt ? " and " : ", ")
                     : nt == 1 ? "the frame of "
                               : "the frames of ");
        ana_name(b, ana_task(g, (size_t)tasks[k]));
    }
    if (via) {
        sbuf_printf(b, " (through a %s object)", via);
    }
    for (size_t k = 0; k < no; k++) {
        sbuf_printf(b, "%s%s %s object",
                    k    ? ", "
                    : nt ? " and "
                         : "",
                    strchr("aeiouAEIOU", others[k][0]) ? "an" : "a", others[k]);
    }
    if (no) {
        sbuf_adds(b, " nothing able to run reaches");
    }
    sbuf_adds(b, ", none of which can run");
}

/* "Queue 0x.. (awaited by 'w'): nothing still able to run references it,
 * only the frames of 'w' and 'p' (through a Service object), none of which
 * can run." */
static err_t ana_stuck_detail(ana_stuck *s, ana_diagnosis *d, const aio_task *waiter,
                              uint32_t obj) {
    const ana_graph *g = &s->c->g;
    const aio_model *m = g->m;
    sbuf b;
    sbuf_init(&b);
    uint64_t ri;
    if (waiter->waits_kind == AIO_KIND_TASK) {
        sbuf_adds(&b, "Task ");
        ana_name(&b, waiter);
        sbuf_adds(&b, " awaits task ");
        size_t node;
        if (ana_node_of_task(g, waiter->waits_on, &node)) {
            ana_name(&b, ana_task(g, node));
        }
        sbuf_adds(&b, ", itself stuck");
    } else {
        if (u64map_get(&g->res_index, waiter->waits_on, &ri)) {
            ana_res_name(&b, VEC_AT(&m->resources, aio_resource, ri));
        } else {
            sbuf_printf(&b, "%s 0x%llx", aio_kind_name(waiter->waits_kind),
                        (unsigned long long)waiter->waits_on);
        }
        sbuf_adds(&b, " (awaited by ");
        ana_name(&b, waiter);
        sbuf_adds(&b, "): nothing still able to run references it");
        uint64_t slot;
        if (obj != AIO_HEAP_NONE && u64map_get(&s->target, (uint64_t)obj + 1, &slot)) {
            ana_referrers(s, &b, (const uint32_t *)s->refs.data + (slot - 1) * ANA_REFERRERS_MAX);
        }
    }
    sbuf_adds(&b, ".");
    if (b.oom) {
        sbuf_free(&b);
        return ERR_NOMEM;
    }
    char *line = util_strdup(sbuf_str(&b));
    sbuf_free(&b);
    char **slotp = line ? vec_push(&d->details) : NULL;
    if (!slotp) {
        util_free(line);
        return ERR_NOMEM;
    }
    *slotp = line;
    return ERR_OK;
}

/* Stuck tasks another finding already names (a ring, a re-acquire, a loop
 * nothing can wake) are not repeated. */
static err_t ana_named_elsewhere(const ana_result *out, u64set *named) {
    for (size_t i = 0; i < out->diagnoses.len; i++) {
        const ana_diagnosis *d = VEC_AT(&out->diagnoses, ana_diagnosis, i);
        if (d->kind == ANA_WEAK_PENDING || d->kind == ANA_LOOP_BLOCKED ||
            d->kind == ANA_NESTED_LOOP || d->kind == ANA_LOOP_SELF_WAIT) {
            continue;
        }
        for (size_t k = 0; k < d->tasks.len; k++) {
            if (u64set_add(named, *VEC_AT(&d->tasks, uint64_t, k)) < 0) {
                return ERR_NOMEM;
            }
        }
    }
    return ERR_OK;
}

static err_t ana_report_group(ana_stuck *s, const uint32_t *members, size_t n) {
    ana_ctx *c = s->c;
    const ana_graph *g = &c->g;
    const aio_model *m = g->m;
    ana_diagnosis *d = ana_new(c, ANA_STUCK, VEC_AT(&m->tasks, aio_task, members[0])->loop);
    if (!d) {
        return ERR_NOMEM;
    }
    size_t cancellable = 0;
    u64set res;
    u64set_init(&res);
    for (size_t k = 0; k < n; k++) {
        const aio_task *t = VEC_AT(&m->tasks, aio_task, members[k]);
        int added = t->waits_kind == AIO_KIND_TASK ? 0 : u64set_add(&res, t->waits_on);
        if (added < 0 || !u64vec_push(&d->tasks, t->id) ||
            (added && !u64vec_push(&d->resources, t->waits_on))) {
            u64set_free(&res);
            return ERR_NOMEM;
        }
        cancellable += (c->out->task_flags[members[k]] & ANA_TASK_CANCELLABLE) != 0;
    }
    u64set_free(&res);
    /* One detail per distinct wait, by its first waiter. */
    u64set seen;
    u64set_init(&seen);
    err_t e = ERR_OK;
    for (size_t k = 0; k < n && e == ERR_OK && d->details.len < ANA_DETAILS_MAX; k++) {
        const aio_task *t = VEC_AT(&m->tasks, aio_task, members[k]);
        int added = u64set_add(&seen, t->waits_on);
        if (added < 0) {
            e = ERR_NOMEM;
        } else if (added) {
            uint32_t obj = aio_heap_find(s->h, t->waits_on);
            e = ana_stuck_detail(s, d, t, obj);
        }
    }
    u64set_free(&seen);
    if (e != ERR_OK) {
        return e;
    }
    sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, n == 1 ? "Task " : "Tasks ");
    ana_task_list(&b, g, &d->tasks);
    sbuf_printf(&b, " %s on ", n == 1 ? "waits" : "wait");
    for (size_t i = 0; i < d->resources.len && i < ANA_NAMES_SHOWN; i++) {
        uint64_t ri;
        sbuf_adds(&b, i ? ", " : "");
        if (u64map_get(&g->res_index, *VEC_AT(&d->resources, uint64_t, i), &ri)) {
            ana_res_name(&b, VEC_AT(&m->resources, aio_resource, ri));
        }
    }
    if (d->resources.len > ANA_NAMES_SHOWN) {
        sbuf_printf(&b, " and %zu more", (size_t)d->resources.len - ANA_NAMES_SHOWN);
    }
    if (!d->resources.len) {
        sbuf_adds(&b, "stuck tasks");
    }
    sbuf_printf(&b, " that nothing still able to run can reach: %s stuck for good",
                n == 1 ? "it is" : "they are");
    if (cancellable) {
        sbuf_printf(&b, " (%s, held by live code, could still be cancelled)",
                    cancellable == n ? (n == 1 ? "it" : "all of them") : "some of them");
    }
    sbuf_adds(&b, ".");
    return ana_finish(d, &b);
}

err_t ana_report_stuck(ana_ctx *c) {
    const aio_model *m = c->g.m;
    const ana_result *out = c->out;
    if (!out->stuck_known) {
        return ERR_OK;
    }
    size_t nt = m->tasks.len, nstuck = 0;
    for (size_t t = 0; t < nt; t++) {
        nstuck += (out->task_flags[t] & ANA_TASK_STUCK) != 0;
    }
    if (!nstuck) {
        return ERR_OK;
    }
    ana_stuck s;
    memset(&s, 0, sizeof s);
    s.c = c;
    s.h = &m->heap;
    vec_init(&s.refs, sizeof(uint32_t));
    vec_init(&s.hop_refs, sizeof(uint32_t));
    size_t n = s.h->objs.len;
    s.owner = util_alloc((n + 1) * sizeof *s.owner);
    s.parent = util_alloc((nt + 1) * sizeof *s.parent);
    s.target_bits = util_calloc(n / 64 + 1, sizeof *s.target_bits);
    s.hop_bits = util_calloc(n / 64 + 1, sizeof *s.hop_bits);
    u64set named;
    u64set_init(&named);
    vec members;
    vec_init(&members, sizeof(uint32_t));
    err_t e = s.owner && s.parent && s.target_bits && s.hop_bits ? ana_named_elsewhere(out, &named)
                                                                 : ERR_NOMEM;
    for (size_t i = 0; e == ERR_OK && i < n; i++) {
        s.owner[i] = AIO_HEAP_NONE;
    }
    for (size_t t = 0; e == ERR_OK && t < nt; t++) {
        const aio_heap_task *ht = VEC_AT(&s.h->tasks, aio_heap_task, t);
        s.parent[t] = (uint32_t)t;
        if (ht->obj != AIO_HEAP_NONE) {
            s.owner[ht->obj] = (uint32_t)t | ANA_OWN_TASKOBJ;
        }
        for (uint32_t k = 0; k < ht->nchain; k++) {
            s.owner[*VEC_AT(&s.h->chain, uint32_t, ht->chain + k)] = (uint32_t)t;
        }
    }
    /* What the stuck tasks wait on, as targets of the referrer scan. */
    for (size_t t = 0; e == ERR_OK && t < nt; t++) {
        const aio_task *task = VEC_AT(&m->tasks, aio_task, t);
        if (!(out->task_flags[t] & ANA_TASK_STUCK) || task->waits_kind == AIO_KIND_TASK) {
            continue;
        }
        uint32_t obj = aio_heap_find(s.h, task->waits_on);
        uint64_t v;
        if (obj == AIO_HEAP_NONE || u64map_get(&s.target, (uint64_t)obj + 1, &v)) {
            continue;
        }
        for (size_t j = 0; j < ANA_REFERRERS_MAX && e == ERR_OK; j++) {
            e = ana_push32(&s.refs, AIO_HEAP_NONE) ? ERR_OK : ERR_NOMEM;
        }
        if (e == ERR_OK &&
            !u64map_put(&s.target, (uint64_t)obj + 1, s.refs.len / ANA_REFERRERS_MAX)) {
            e = ERR_NOMEM;
        }
        if (e == ERR_OK) {
            ana_set_bit(s.target_bits, obj);
        }
    }
    if (e == ERR_OK) {
        e = ana_collect_referrers(&s);
    }
    if (e == ERR_OK) {
        e = ana_collect_hops(&s);
    }
    /* Groups: a task with what it awaits, and with the stuck tasks whose
     * frames still reference that. */
    u64map by_wait; /* waited-on id -> 1 + first stuck task waiting on it */
    u64map_init(&by_wait);
    for (size_t t = 0; e == ERR_OK && t < nt; t++) {
        const aio_task *task = VEC_AT(&m->tasks, aio_task, t);
        if (!(out->task_flags[t] & ANA_TASK_STUCK)) {
            continue;
        }
        size_t node;
        if (task->waits_kind == AIO_KIND_TASK && ana_node_of_task(&c->g, task->waits_on, &node) &&
            (out->task_flags[node] & ANA_TASK_STUCK)) {
            ana_union(s.parent, (uint32_t)t, (uint32_t)node);
        }
        /* A gather, TaskGroup or shield: with its stuck children. */
        uint64_t ri;
        if (task->waits_kind != AIO_KIND_TASK && u64map_get(&c->g.res_index, task->waits_on, &ri)) {
            const vec *kids = &VEC_AT(&m->resources, aio_resource, ri)->members;
            for (size_t k = 0; k < kids->len; k++) {
                if (ana_node_of_task(&c->g, *VEC_AT(kids, uint64_t, k), &node) &&
                    (out->task_flags[node] & ANA_TASK_STUCK)) {
                    ana_union(s.parent, (uint32_t)t, (uint32_t)node);
                }
            }
        }
        uint64_t v;
        if (!task->waits_on) {
            continue;
        }
        if (u64map_get(&by_wait, task->waits_on, &v)) {
            ana_union(s.parent, (uint32_t)t, (uint32_t)(v - 1));
        } else if (!u64map_put(&by_wait, task->waits_on, t + 1)) {
            e = ERR_NOMEM;
        }
        uint32_t obj = aio_heap_find(s.h, task->waits_on);
        uint64_t slot;
        if (obj == AIO_HEAP_NONE || !u64map_get(&s.target, (uint64_t)obj + 1, &slot)) {
            continue;
        }
        const uint32_t *refs = (const uint32_t *)s.refs.data + (slot - 1) * ANA_REFERRERS_MAX;
        for (size_t j = 0; j < ANA_REFERRERS_MAX && refs[j] != AIO_HEAP_NONE; j++) {
            int64_t holder = ana_holding_task(&s, refs[j]);
            if (holder >= 0 && (out->task_flags[holder] & ANA_TASK_STUCK)) {
                ana_union(s.parent, (uint32_t)t, (uint32_t)holder);
            }
        }
    }
    u64map_free(&by_wait);
    /* Each group's members in task order, in one pass: a list per root
     * (its smallest index), built backwards. */
    uint32_t *head = e == ERR_OK ? util_alloc((nt + 1) * sizeof *head) : NULL;
    uint32_t *next = head ? util_alloc((nt + 1) * sizeof *next) : NULL;
    if (e == ERR_OK && !next) {
        e = ERR_NOMEM;
    }
    for (size_t t = 0; e == ERR_OK && t < nt; t++) {
        head[t] = AIO_HEAP_NONE;
    }
    for (size_t t = nt; e == ERR_OK && t-- > 0;) {
        if ((out->task_flags[t] & ANA_TASK_STUCK) &&
            !u64set_has(&named, VEC_AT(&m->tasks, aio_task, t)->id)) {
            uint32_t root = ana_find(s.parent, (uint32_t)t);
            next[t] = head[root];
            head[root] = (uint32_t)t;
        }
    }
    for (size_t root = 0; e == ERR_OK && root < nt; root++) {
        members.len = 0;
        for (uint32_t t = head[root]; t != AIO_HEAP_NONE && e == ERR_OK; t = next[t]) {
            e = ana_push32(&members, t) ? ERR_OK : ERR_NOMEM;
        }
        if (e == ERR_OK && members.len) {
            e = ana_report_group(&s, members.data, members.len);
        }
    }
    util_free(head);
    util_free(next);
    vec_free(&members);
    u64set_free(&named);
    util_free(s.owner);
    util_free(s.parent);
    util_free(s.target_bits);
    util_free(s.hop_bits);
    u64map_free(&s.target);
    u64map_free(&s.hop);
    vec_free(&s.refs);
    vec_free(&s.hop_refs);
    return e;
}
