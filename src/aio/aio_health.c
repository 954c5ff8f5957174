/* What the diagnoses need from the target beyond the await chains: who holds
 * each Lock and Semaphore (the context manager's __aexit__ that `async with`
 * leaves on a suspended frame's value stack), which tasks reference each
 * Event, Condition, Queue, Barrier or future and so could wake it, whether
 * anything else references it (its refcount), and each loop's health. */
#include "aio_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Value-stack slots of one frame we scan. */
#define AIO_STACK_SCAN_MAX 64
/* Locals of one frame we scan for references. */
#define AIO_LOCALS_SCAN_MAX 256

/* anyio's Semaphore (whose backend class records no owner) is held by the
 * tasks inside `async with` on it, like asyncio's: its __aexit__ is in
 * anyio's own files. */
static bool aio_anyio_aexit(aio_ctx *c, uint64_t func, const char *qualname) {
    uint64_t code;
    const py_code *pc;
    return strcmp(qualname, "Semaphore.__aexit__") == 0 &&
           mem_read_u64(c->t->m, func + (uint64_t)c->t->L.func_code, &code) == ERR_OK &&
           py_code_get(c->t, code, &pc) == ERR_OK && pc->filename &&
           strstr(pc->filename, "/anyio/") != NULL;
}

/* Functions already identified as asyncio's _ContextManagerMixin.__aexit__
 * (value 2) or as something else (value 1). */
static bool aio_is_aexit(aio_ctx *c, uint64_t func) {
    u64map *cache = &c->aexit_funcs;
    uint64_t v;
    if (u64map_get(cache, func, &v)) {
        return v == 2;
    }
    py_target *t = c->t;
    uint64_t type, qn;
    char name[64];
    bool yes =
        py_type_of(t, func, &type) == ERR_OK && type == t->types.function &&
        mem_read_u64(t->m, func + (uint64_t)t->L.func_qualname, &qn) == ERR_OK &&
        py_read_str_buf(t, qn, name, sizeof name) == ERR_OK &&
        (strcmp(name, "_ContextManagerMixin.__aexit__") == 0 || aio_anyio_aexit(c, func, name));
    u64map_put(cache, func, yes ? 2 : 1);
    return yes;
}

static aio_kind aio_primitive_kind(aio_ctx *c, uint64_t obj) {
    uint64_t type;
    if (py_type_of(c->t, obj, &type) != ERR_OK) {
        return AIO_KIND_NONE;
    }
    return py_type_is(c->t, type, "Lock")        ? AIO_KIND_LOCK
           : py_type_is(c->t, type, "Semaphore") ? AIO_KIND_SEMAPHORE
           : py_type_is(c->t, type, "Condition") ? AIO_KIND_CONDITION
                                                 : AIO_KIND_NONE;
}

static err_t aio_add_holder(aio_ctx *c, uint64_t obj, const aio_task *task, const aio_frame *f) {
    aio_kind kind = aio_primitive_kind(c, obj);
    if (kind == AIO_KIND_NONE) {
        return ERR_OK;
    }
    uint64_t lock = 0;
    if (kind == AIO_KIND_CONDITION && py_attr(c->t, obj, "_lock", &lock) == ERR_OK && lock) {
        /* `async with cond` holds the condition's lock, which is what
         * other tasks' acquire() waits for. */
        err_t e = aio_add_holder(c, lock, task, f);
        if (e != ERR_OK) {
            return e;
        }
    }
    aio_resource *r = aio_resource_get(c, obj, kind);
    if (!r) {
        return ERR_NOMEM;
    }
    /* Holders are placed task after task (aio_place_holdings), so the task
     * holds it already only if it is the last holder: a search would make
     * a Semaphore held by 100,000 tasks quadratic. */
    if (r->holders.len && *VEC_AT(&r->holders, uint64_t, r->holders.len - 1) == task->id) {
        return ERR_OK;
    }
    uint64_t *h = vec_push(&r->holders);
    aio_site *site = h ? vec_push(&r->holder_sites) : NULL;
    if (!site) {
        return ERR_NOMEM;
    }
    *h = task->id;
    site->function = aio_frame_function(f);
    site->file = aio_frame_file(f);
    site->line = f->line;
    return ERR_OK;
}

/* The context managers a suspended frame is inside of, from its value
 * stack: 3.11-3.13 keep a bound __aexit__, 3.14+ the function then self. */
static err_t aio_frame_holds(aio_ctx *c, const aio_task *task, size_t k) {
    py_target *t = c->t;
    const aio_frame *f = VEC_AT(&task->frames, aio_frame, k);
    int depth = f->depth;
    if (!aio_frame_code(f) || depth < 0) {
        return ERR_OK;
    }
    if (depth > AIO_STACK_SCAN_MAX) {
        depth = AIO_STACK_SCAN_MAX;
    }
    uint64_t held[AIO_STACK_SCAN_MAX];
    int nheld = 0;
    for (int i = 0; i < depth; i++) {
        uint64_t o, type;
        if (py_frame_slot(t, f->addr, aio_frame_nlocals(f) + i, &o) != ERR_OK || !o ||
            py_type_of(t, o, &type) != ERR_OK) {
            continue;
        }
        uint64_t func, self = 0;
        if (type == t->types.method &&
            mem_read_u64(t->m, o + (uint64_t)t->L.meth_func, &func) == ERR_OK &&
            aio_is_aexit(c, func)) {
            mem_read_u64(t->m, o + (uint64_t)t->L.meth_self, &self);
        } else if (type == t->types.function && i + 1 < depth && aio_is_aexit(c, o)) {
            py_frame_slot(t, f->addr, aio_frame_nlocals(f) + i + 1, &self);
        }
        if (self) {
            held[nheld++] = self;
        }
    }
    /* While the frame awaits __aenter__, its newest context manager is the
     * one being acquired, not held. */
    if (nheld && k > 0) {
        const aio_frame *inner = VEC_AT(&task->frames, aio_frame, k - 1);
        if (aio_frame_function(inner) &&
            (strcmp(aio_frame_function(inner), "_ContextManagerMixin.__aenter__") == 0 ||
             (strcmp(aio_frame_function(inner), "Semaphore.__aenter__") == 0 &&
              aio_frame_file(inner) && strstr(aio_frame_file(inner), "/anyio/")))) {
            nheld--;
        }
    }
    for (int i = 0; i < nheld; i++) {
        aio_holding *h = vec_push(&c->holdings);
        if (!h) {
            return ERR_NOMEM;
        }
        *h = (aio_holding){held[i], task->id, k};
    }
    return ERR_OK;
}

err_t aio_task_holds(aio_ctx *c, const aio_task *task) {
    err_t e = ERR_OK;
    for (size_t k = 0; k < task->frames.len && e == ERR_OK; k++) {
        e = aio_frame_holds(c, task, k);
    }
    return e;
}

/* The holders the tasks' reads saw, task by task in the model's order and
 * within a task in the order seen, of the tasks still pending and not
 * running (a running task's stack is on its thread, not in its frames).
 * Each holding's place is one key, task index << 32 | its index in
 * c->holdings: both are vector indexes, below 2^32. */
static err_t aio_place_holdings(aio_ctx *c) {
    aio_model *m = c->model;
    size_t n = c->holdings.len, nkeys = 0;
    uint64_t *keys = n ? util_alloc(n * sizeof *keys) : NULL;
    if (n && !keys) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t idx;
        if (u64map_get(&c->task_index, VEC_AT(&c->holdings, aio_holding, i)->task, &idx) &&
            idx < m->tasks.len) {
            keys[nkeys++] = idx << 32 | i;
        }
    }
    err_t e = util_sort_u64(keys, NULL, nkeys) ? ERR_OK : ERR_NOMEM;
    for (size_t i = 0; i < nkeys && e == ERR_OK; i++) {
        const aio_holding *h = VEC_AT(&c->holdings, aio_holding, (uint32_t)keys[i]);
        const aio_task *task = VEC_AT(&m->tasks, aio_task, keys[i] >> 32);
        if (task->state != AIO_STATE_PENDING || task->running_thread ||
            h->frame >= task->frames.len) {
            continue;
        }
        e = aio_add_holder(c, h->self, task, VEC_AT(&task->frames, aio_frame, h->frame));
    }
    util_free(keys);
    return e;
}

/* References from tasks' frames to the resources: counts (for the refcount
 * test) and which tasks hold them. */
typedef struct aio_refs {
    u64map count; /* resource id -> references found from frames */
    /* uint64_t: resource index << 32 | task index, one per reference (both
     * are below 2^32: vectors' lengths are 32 bits). Two ids per reference
     * were 32 MB at a million tasks, while the object graph is kept. */
    vec pairs;
    uint32_t task_ix; /* the task whose frames are being scanned */
} aio_refs;

/* Whether type is _asyncio.FutureIter (its name read once per type,
 * aio_type_name: the scan meets a few types a million times). */
static bool aio_is_future_iter(aio_ctx *c, uint64_t type) {
    const char *name = aio_type_name(c, type);
    return name && strcmp(name, "_asyncio.FutureIter") == 0;
}

static err_t aio_note_ref(aio_ctx *c, aio_refs *refs, uint64_t obj, uint64_t task, bool owned) {
    uint64_t idx, n = 0;
    aio_fw_note_ref(c, obj, task, owned);
    if (!obj || !u64map_get(&c->resource_index, obj, &idx)) {
        return ERR_OK;
    }
    if (owned) {
        u64map_get(&refs->count, obj, &n);
        if (!u64map_put(&refs->count, obj, n + 1)) {
            return ERR_NOMEM;
        }
    }
    return u64vec_push(&refs->pairs, idx << 32 | refs->task_ix) ? ERR_OK : ERR_NOMEM;
}

/* One slot's referent, and what a FutureIter or cell on it holds. */
static err_t aio_scan_object(aio_ctx *c, aio_refs *refs, u64set *cells, uint64_t bits,
                             uint64_t task) {
    py_target *t = c->t;
    uint64_t o = py_stackref_obj(t, bits), type, inner;
    bool owned = !t->L.stackref_tagged || !(bits & 1);
    if (!o || py_type_of(t, o, &type) != ERR_OK) {
        return ERR_OK;
    }
    err_t e = aio_note_ref(c, refs, o, task, owned);
    if (e != ERR_OK) {
        return e;
    }
    uint64_t count;
    bool immortal;
    if (type == t->types.method && py_refcount(t, o, &count, &immortal) == ERR_OK && count == 1 &&
        mem_read_u64(t->m, o + (uint64_t)t->L.meth_self, &inner) == ERR_OK) {
        /* A bound method only this slot holds (the __aexit__ `async with`
         * leaves): its self is as good as referenced from the frame. */
        return aio_note_ref(c, refs, inner, task, true);
    }
    if (type == t->types.cell) {
        /* A cell holds one reference to its content, whoever shares it. */
        if (u64set_add(cells, o) == 1 &&
            mem_read_u64(t->m, o + (uint64_t)t->L.cell_ref, &inner) == ERR_OK) {
            return aio_note_ref(c, refs, inner, task, true);
        }
        return ERR_OK;
    }
    if (aio_is_future_iter(c, type) && mem_read_u64(t->m, o + 16, &inner) == ERR_OK) {
        return aio_note_ref(c, refs, inner, task, true);
    }
    /* References through objects (self.event) are not followed: such a
     * resource then has references beyond the frames, counts as reachable
     * from elsewhere, and no wake-cycle is claimed for it. */
    return ERR_OK;
}

static err_t aio_scan_task_refs(aio_ctx *c, aio_refs *refs, u64set *cells, const aio_task *task) {
    py_target *t = c->t;
    for (size_t k = 0; k < task->frames.len; k++) {
        const aio_frame *f = VEC_AT(&task->frames, aio_frame, k);
        int depth = task->running_thread || f->depth < 0 ? 0 : f->depth;
        if (!aio_frame_code(f) || aio_frame_nlocals(f) < 0) {
            continue;
        }
        int n = aio_frame_nlocals(f) + (depth > AIO_STACK_SCAN_MAX ? AIO_STACK_SCAN_MAX : depth);
        for (int i = 0; i < n && i < AIO_LOCALS_SCAN_MAX; i++) {
            uint64_t bits;
            if (py_frame_slot_raw(t, f->addr, i, &bits) == ERR_OK) {
                err_t e = aio_scan_object(c, refs, cells, bits, task->id);
                if (e != ERR_OK) {
                    return e;
                }
            }
        }
    }
    /* A C task's fut_waiter is a reference to the future it waits on. */
    if (task->c_task && task->waits_on && task->waits_kind == AIO_KIND_FUTURE) {
        return aio_note_ref(c, refs, task->waits_on, task->id, true);
    }
    return ERR_OK;
}

static bool aio_wakeable_kind(aio_kind k) {
    return k == AIO_KIND_EVENT || k == AIO_KIND_CONDITION || k == AIO_KIND_QUEUE ||
           k == AIO_KIND_BARRIER || k == AIO_KIND_FUTURE;
}

static bool aio_locked(aio_ctx *c, const aio_resource *r) {
    uint64_t v = 0;
    int64_t n;
    bool fw;
    if (aio_fw_locked(c, r, &fw)) {
        return fw;
    }
    if (r->kind == AIO_KIND_CONDITION) {
        uint64_t lock = 0;
        return py_attr(c->t, r->id, "_lock", &lock) == ERR_OK && lock &&
               py_attr(c->t, lock, "_locked", &v) == ERR_OK && v == c->t->types.true_;
    }
    if (r->kind == AIO_KIND_LOCK) {
        return py_attr(c->t, r->id, "_locked", &v) == ERR_OK && v == c->t->types.true_;
    }
    if (r->kind == AIO_KIND_SEMAPHORE) {
        return py_attr(c->t, r->id, "_value", &v) == ERR_OK && v &&
               py_read_long(c->t, v, &n) == ERR_OK && n <= 0;
    }
    return false;
}

/* Adds x to v unless `seen` has it: membership through a set, so that one
 * resource with a million waiters costs a million steps, not their square. */
static err_t aio_add_new(vec *v, u64set *seen, uint64_t x) {
    int added = u64set_add(seen, x);
    if (added < 0) {
        return ERR_NOMEM;
    }
    return added == 0 || u64vec_push(v, x) ? ERR_OK : ERR_NOMEM;
}

static err_t aio_seed_set(u64set *set, const vec *v) {
    for (size_t i = 0; i < v->len; i++) {
        if (u64set_add(set, *VEC_AT(v, uint64_t, i)) < 0) {
            return ERR_NOMEM;
        }
    }
    return ERR_OK;
}

/* Makes each task whose frames reference a resource it does not wait on a
 * resolver (or a possible holder) of it. The (resource, task) pairs are
 * grouped by resource in a stable counting sort, and each resource is then
 * handled once, with its waiters and the tasks already placed in sets: the
 * pairs keep their order of discovery within a resource. */
static err_t aio_place_refs(aio_ctx *c, const vec *pairs) {
    aio_model *m = c->model;
    size_t np = pairs->len, nr = m->resources.len;
    const uint64_t *p = pairs->data;
    /* 32 bits: np is a vector's length. */
    uint32_t *start = util_calloc(nr + 1, sizeof *start);
    uint32_t *order = util_calloc(np ? np : 1, sizeof *order);
    err_t e = start && order ? ERR_OK : ERR_NOMEM;
    for (size_t i = 0; i < np && e == ERR_OK; i++) {
        if (p[i] >> 32 < nr) {
            start[(p[i] >> 32) + 1]++;
        }
    }
    for (size_t r = 0; r < nr && e == ERR_OK; r++) {
        start[r + 1] += start[r];
    }
    for (size_t i = 0; i < np && e == ERR_OK; i++) {
        if (p[i] >> 32 < nr) {
            order[start[p[i] >> 32]++] = (uint32_t)i;
        }
    }
    /* start[r] is now the end of resource r's run, and start[r - 1] its
     * beginning. */
    size_t from = 0;
    for (size_t ri = 0; ri < nr && e == ERR_OK; ri++) {
        size_t to = start[ri];
        if (from == to) {
            continue;
        }
        aio_resource *r = VEC_AT(&m->resources, aio_resource, ri);
        bool wake = aio_wakeable_kind(r->kind);
        bool hold =
            (r->kind == AIO_KIND_LOCK || r->kind == AIO_KIND_SEMAPHORE) && r->holders.len == 0;
        vec *dst = wake ? &r->resolvers : hold ? &r->possible_holders : NULL;
        u64set waiters, placed;
        u64set_init(&waiters);
        u64set_init(&placed);
        if (dst) {
            e = aio_seed_set(&waiters, &r->waiters);
            if (e == ERR_OK) {
                e = aio_seed_set(&placed, dst);
            }
        }
        for (size_t k = from; k < to && dst && e == ERR_OK; k++) {
            uint64_t task = VEC_AT(&m->tasks, aio_task, (uint32_t)p[order[k]])->id;
            if (!u64set_has(&waiters, task)) {
                /* a task waiting on it cannot be the one to wake it */
                e = aio_add_new(dst, &placed, task);
            }
        }
        u64set_free(&waiters);
        u64set_free(&placed);
        from = to;
    }
    util_free(start);
    util_free(order);
    return e;
}

static err_t aio_resolvers(aio_ctx *c) {
    aio_model *m = c->model;
    aio_refs refs;
    u64map_init(&refs.count);
    vec_init(&refs.pairs, sizeof(uint64_t));
    u64set cells;
    u64set_init(&cells);
    err_t e = ERR_OK;
    for (size_t i = 0; i < m->tasks.len && e == ERR_OK; i++) {
        const aio_task *task = VEC_AT(&m->tasks, aio_task, i);
        if (task->state == AIO_STATE_PENDING) {
            refs.task_ix = (uint32_t)i;
            e = aio_scan_task_refs(c, &refs, &cells, task);
        }
    }
    if (e == ERR_OK) {
        e = aio_place_refs(c, &refs.pairs);
    }
    for (size_t i = 0; i < m->resources.len && e == ERR_OK; i++) {
        aio_resource *r = VEC_AT(&m->resources, aio_resource, i);
        if ((r->kind == AIO_KIND_LOCK || r->kind == AIO_KIND_SEMAPHORE) && r->holders.len == 0 &&
            !aio_locked(c, r)) {
            r->possible_holders.len = 0; /* free: nobody holds it */
        }
        uint64_t count, found = 0;
        bool immortal;
        u64map_get(&refs.count, r->id, &found);
        /* Anything beyond the references from tasks' frames may be someone
         * who will wake it (a handle, a global, another thread): it must
         * make the resource look more reachable, never less. */
        r->external_refs = py_refcount(c->t, r->id, &count, &immortal) != ERR_OK || immortal ||
                           count > found;
    }
    u64map_free(&refs.count);
    vec_free(&refs.pairs);
    u64set_free(&cells);
    return e;
}

static bool aio_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* run_coroutine_threadsafe(coro, loop) queues a callback on loop that would
 * complete `future`: if the loop thread itself waits on that future, only
 * the blocked loop could complete it. */
static uint64_t aio_threadsafe_future(aio_ctx *c, const aio_loop *l, uint64_t cf) {
    py_target *t = c->t;
    uint64_t ready;
    vec handles;
    vec_init(&handles, sizeof(uint64_t));
    uint64_t found = 0;
    if (py_attr(t, l->id, "_ready", &ready) == ERR_OK && ready &&
        py_deque_items(t, ready, &handles) == ERR_OK) {
        for (size_t i = 0; i < handles.len && !found; i++) {
            uint64_t cb = 0, fut = 0;
            if (py_slot(t, *VEC_AT(&handles, uint64_t, i), "_callback", &cb) == ERR_OK && cb &&
                py_func_closure_var(t, cb, "future", &fut) == ERR_OK && fut == cf) {
                found = cf;
            }
        }
    }
    vec_free(&handles);
    return found;
}

static void aio_loop_doing(aio_ctx *c, aio_loop *l) {
    aio_model *m = c->model;
    const aio_thread *th = NULL;
    for (size_t i = 0; i < m->threads.len && !th; i++) {
        const aio_thread *x = VEC_AT(&m->threads, aio_thread, i);
        if (l->thread && x->native_id == l->thread) {
            th = x;
        }
    }
    if (!th || th->frames.len == 0) {
        return;
    }
    for (size_t i = 0; i < th->frames.len; i++) {
        const aio_frame *f = VEC_AT(&th->frames, aio_frame, i);
        if (aio_frame_function(f) &&
            strcmp(aio_frame_function(f), "BaseEventLoop.run_forever") == 0) {
            l->runs++;
        }
    }
    const aio_frame *top = VEC_AT(&th->frames, aio_frame, 0);
    l->doing_frame = top;
    if (!aio_frame_function(top)) {
        return;
    }
    if (aio_ends_with(aio_frame_function(top), "Selector.select")) {
        l->doing = AIO_DOING_SELECT;
        return;
    }
    /* A thread wait: threading's primitives or a concurrent future. */
    for (size_t i = 0; i < th->frames.len; i++) {
        const aio_frame *f = VEC_AT(&th->frames, aio_frame, i);
        if (!aio_frame_function(f) || !aio_frame_file(f)) {
            break;
        }
        bool in_threading = aio_ends_with(aio_frame_file(f), "/threading.py");
        bool cf_result = aio_ends_with(aio_frame_file(f), "concurrent/futures/_base.py") &&
                         strcmp(aio_frame_function(f), "Future.result") == 0;
        if (!in_threading && !cf_result) {
            break;
        }
        l->doing = AIO_DOING_THREAD_WAIT;
        uint64_t cf;
        if (cf_result && py_frame_slot(c->t, f->addr, 0, &cf) == ERR_OK && cf) {
            l->self_wait_future = aio_threadsafe_future(c, l, cf);
            aio_resource *r = l->self_wait_future ? aio_resource_get(c, cf, AIO_KIND_FUTURE) : NULL;
            if (r) {
                snprintf(r->detail, sizeof r->detail, "concurrent future the loop thread waits on");
            }
        }
    }
    if (l->doing == AIO_DOING_THREAD_WAIT) {
        return;
    }
    if (l->running_task) {
        l->doing = AIO_DOING_TASK;
        return;
    }
    /* A callback runs under Handle._run; without it the loop is inside its
     * own C code (uvloop waits in libuv, not in a Python selector): idle or
     * not, nothing can be claimed. */
    for (size_t i = 0; i < th->frames.len; i++) {
        const aio_frame *f = VEC_AT(&th->frames, aio_frame, i);
        if (aio_frame_function(f) && strcmp(aio_frame_function(f), "Handle._run") == 0) {
            l->doing = AIO_DOING_CALLBACK;
            return;
        }
    }
}

/* Every count here argues "nothing can wake it": a read that fails must
 * leave the health unknown, never a zero. */
static void aio_loop_health(aio_ctx *c, aio_loop *l) {
    py_target *t = c->t;
    uint64_t ready = 0, sched = 0, selector = 0, fd_to_key = 0, ssock = 0, nready, used;
    if (py_attr(t, l->id, "_ready", &ready) != ERR_OK || !ready ||
        py_attr(t, l->id, "_scheduled", &sched) != ERR_OK || !sched) {
        return; /* not an asyncio BaseEventLoop (uvloop keeps these in C) */
    }
    uint64_t front_index;
    if (mem_read_u64(t->m, ready + (uint64_t)t->L.ob_size, &nready) != ERR_OK ||
        mem_read_u64(t->m, ready + (uint64_t)t->L.deque_left, &l->ready_block) != ERR_OK ||
        mem_read_u64(t->m, ready + (uint64_t)t->L.deque_leftindex, &front_index) != ERR_OK ||
        py_attr(t, l->id, "_selector", &selector) != ERR_OK || !selector ||
        selector == t->types.none ||
        py_attr(t, selector, "_fd_to_key", &fd_to_key) != ERR_OK || !fd_to_key ||
        mem_read_u64(t->m, fd_to_key + (uint64_t)t->L.dict_used, &used) != ERR_OK ||
        py_attr(t, l->id, "_ssock", &ssock) != ERR_OK) {
        return;
    }
    vec handles;
    vec_init(&handles, sizeof(uint64_t));
    if (py_list_items(t, sched, &handles) != ERR_OK) {
        vec_free(&handles);
        return;
    }
    for (size_t i = 0; i < handles.len; i++) {
        uint64_t h = *VEC_AT(&handles, uint64_t, i), cancelled = 0, w = 0;
        double d;
        /* A handle whose flag cannot be read counts as a live timer. */
        if (py_slot(t, h, "_cancelled", &cancelled) == ERR_OK && cancelled == t->types.true_) {
            continue;
        }
        bool when = py_slot(t, h, "_when", &w) == ERR_OK && w && py_read_float(t, w, &d) == ERR_OK;
        if (when && isinf(d) && d > 0) {
            continue; /* sleep(math.inf), anyio's sleep_forever: it never fires */
        }
        l->timers++;
        if (when && (!l->has_next_timer || d < l->next_timer)) {
            l->next_timer = d;
            l->has_next_timer = true;
        }
    }
    vec_free(&handles);
    l->ready = (size_t)nready;
    l->ready_index = (int64_t)front_index;
    /* The loop's own self-pipe is always registered while it runs. */
    l->fds = (size_t)used - (ssock && ssock != t->types.none && used ? 1 : 0);
    for (size_t i = 0; i < c->model->resources.len; i++) {
        const aio_resource *r = VEC_AT(&c->model->resources, aio_resource, i);
        if (r->kind == AIO_KIND_EXECUTOR && r->waiters.len) {
            l->executor_jobs++;
        }
    }
    l->health_known = true;
}

/* Python threads that run no loop and are not idle executor workers: any
 * of them could still call into a loop (call_soon_threadsafe). */
static size_t aio_other_threads(aio_ctx *c) {
    aio_model *m = c->model;
    size_t n = 0;
    for (size_t i = 0; i < m->threads.len; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        bool runs_loop = false;
        for (size_t k = 0; k < m->loops.len && !runs_loop; k++) {
            runs_loop = VEC_AT(&m->loops, aio_loop, k)->thread == th->native_id;
        }
        if (runs_loop || th->frames.len == 0) {
            continue;
        }
        bool idle_worker = false;
        for (size_t k = 0; k < th->frames.len && !idle_worker; k++) {
            const aio_frame *f = VEC_AT(&th->frames, aio_frame, k);
            idle_worker =
                aio_frame_function(f) && aio_frame_file(f) &&
                strcmp(aio_frame_function(f), "_worker") == 0 &&
                aio_ends_with(aio_frame_file(f), "concurrent/futures/thread.py") &&
                k + 1 <= th->frames.len && aio_frame_function(VEC_AT(&th->frames, aio_frame, 0)) &&
                strcmp(aio_frame_function(VEC_AT(&th->frames, aio_frame, 0)), "_worker") == 0;
        }
        n += !idle_worker;
    }
    return n;
}

err_t aio_read_health(aio_ctx *c) {
    aio_model *m = c->model;
    err_t e = aio_place_holdings(c);
    /* The stack shows who entered `async with`; the lock tells whether it
     * is held now: a task in Condition.wait() released it meanwhile. */
    for (size_t i = 0; i < m->resources.len && e == ERR_OK; i++) {
        aio_resource *r = VEC_AT(&m->resources, aio_resource, i);
        if (!r->holders.len) {
            continue;
        }
        if (!aio_locked(c, r)) {
            r->holders.len = r->holder_sites.len = 0;
            continue;
        }
        size_t keep = 0;
        for (size_t h = 0; h < r->holders.len; h++) {
            uint64_t id = *VEC_AT(&r->holders, uint64_t, h), idx;
            const aio_task *t = u64map_get(&c->task_index, id, &idx)
                                    ? VEC_AT(&m->tasks, aio_task, idx)
                                    : NULL;
            if (t && t->waits_kind == AIO_KIND_CONDITION) {
                continue; /* waiting in a Condition releases its lock */
            }
            *VEC_AT(&r->holders, uint64_t, keep) = id;
            *VEC_AT(&r->holder_sites, aio_site, keep) = *VEC_AT(&r->holder_sites, aio_site, h);
            keep++;
        }
        r->holders.len = r->holder_sites.len = keep;
    }
    if (e == ERR_OK) {
        e = aio_fw_holders(c);
    }
    if (e == ERR_OK) {
        e = aio_resolvers(c);
    }
    if (e == ERR_OK) {
        e = aio_fw_resolvers(c);
    }
    if (e == ERR_OK) {
        e = aio_thread_resources(c);
    }
    for (size_t i = 0; i < m->loops.len && e == ERR_OK; i++) {
        aio_loop *l = VEC_AT(&m->loops, aio_loop, i);
        aio_loop_health(c, l);
        aio_loop_doing(c, l);
    }
    m->other_threads = aio_other_threads(c);
    return e;
}
