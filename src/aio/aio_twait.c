/* Threads as waiters: what a Python thread blocks on (a concurrent future's
 * result(), a threading Event, Condition or queue, a threading Lock or
 * RLock), which threading locks each thread holds (the __exit__ a `with`
 * leaves on a frame's value stack, or the owner an RLock records), which
 * work item an executor worker runs, and how asyncio futures and concurrent
 * futures stand for each other. The wait-for graph over it is ana's. */
#include "aio_int.h"

#include <stdio.h>
#include <string.h>

/* Value-stack slots of one frame scanned for `with` exits (a frame nests
 * a handful of `with` blocks; CPython's stacks are rarely deeper). */
#define AIO_TSTACK_SCAN_MAX 64
/* An exit method on a stack is referenced by that stack alone; a stale
 * slot of an executing frame that claims more is not trusted. */
#define AIO_TEXIT_REFS_MAX 16
/* PyCFunctionObject.m_ml, and PyMethodDef.ml_name at its start: 3.11-3.15. */
#define AIO_CFUNC_ML_OFF 16
/* PyDescrObject.d_name (PyDescr_COMMON: the header, d_type, d_name): 3.11-3.15. */
#define AIO_DESCR_NAME_OFF 24
/* _thread.RLock's owner (a pthread_t): rlock_owner in 3.11-3.13, the
 * recursive mutex's thread from 3.14; 0 while nobody holds it. */
#define AIO_RLOCK_OWNER_OFF 24
/* _thread.lock: a basicsize of at least this keeps the old layout (the
 * PyThread lock, the weakref list, then `char locked` at +32); a smaller
 * one is a PyMutex byte at +16 whose bit 0 is "locked" (3.13.1+). */
#define AIO_LOCK_OLD_SIZE 40
#define AIO_LOCK_OLD_LOCKED_OFF 32
#define AIO_LOCK_MUTEX_OFF 16
/* functools.partial's func, right after the header: 3.11-3.15. */
#define AIO_PARTIAL_FN_OFF 16
/* Longest method name we compare (__enter__, __exit__, acquire). */
#define AIO_TNAME_MAX 16

typedef enum aio_lockkind { AIO_LK_NONE, AIO_LK_LOCK, AIO_LK_RLOCK } aio_lockkind;

/* How a version runs `with`: the opcode that calls __enter__ (0: the
 * stack pointer is kept during calls, read the stack instead), and
 * whether the __exit__ is on the stack before __enter__ is called (3.11)
 * or the context manager still is (3.12, 3.13). */
typedef struct aio_with_rules {
    int minor;
    int before_with;
    bool exit_first;
} aio_with_rules;

static const aio_with_rules aio_with_table[] = {
    {11, 53, true}, {12, 53, false}, {13, 2, false}, {14, 0, false}, {15, 0, false},
};

static const aio_with_rules *aio_with_for(const py_target *t) {
    for (size_t i = 0; i < ARRAY_LEN(aio_with_table); i++) {
        if (aio_with_table[i].minor == t->L.minor) {
            return &aio_with_table[i];
        }
    }
    return NULL;
}

static bool aio_tends_with(const char *s, const char *suffix) {
    size_t n = s ? strlen(s) : 0, k = strlen(suffix);
    return s && n >= k && strcmp(s + n - k, suffix) == 0;
}

static aio_lockkind aio_lock_kind(py_target *t, uint64_t obj) {
    uint64_t type;
    char name[32];
    if (!obj || py_type_of(t, obj, &type) != ERR_OK ||
        py_type_name(t, type, name, sizeof name) != ERR_OK) {
        return AIO_LK_NONE;
    }
    return strcmp(name, "_thread.lock") == 0    ? AIO_LK_LOCK
           : strcmp(name, "_thread.RLock") == 0 ? AIO_LK_RLOCK
                                                : AIO_LK_NONE;
}

/* Whether a threading lock is held now; *owner is an RLock's owner ident
 * (0 for a Lock, which records none). False when unreadable. */
static bool aio_tlock_held(py_target *t, uint64_t lock, uint64_t *owner) {
    *owner = 0;
    aio_lockkind k = aio_lock_kind(t, lock);
    if (k == AIO_LK_RLOCK) {
        return mem_read_u64(t->m, lock + AIO_RLOCK_OWNER_OFF, owner) == ERR_OK && *owner;
    }
    uint64_t type, size;
    uint8_t b;
    if (k != AIO_LK_LOCK || py_type_of(t, lock, &type) != ERR_OK ||
        mem_read_u64(t->m, type + (uint64_t)t->L.tp_basicsize, &size) != ERR_OK) {
        return false;
    }
    if (size >= AIO_LOCK_OLD_SIZE) {
        return mem_read(t->m, lock + AIO_LOCK_OLD_LOCKED_OFF, 1, &b) == ERR_OK && b;
    }
    return mem_read(t->m, lock + AIO_LOCK_MUTEX_OFF, 1, &b) == ERR_OK && (b & 1);
}

/* The name of a builtin method or a method descriptor, "" otherwise. */
static void aio_cmethod_name(py_target *t, uint64_t obj, uint64_t type, char *buf, size_t cap) {
    char tname[32];
    uint64_t p;
    buf[0] = 0;
    if (type == t->types.cfunction) {
        if (mem_read_u64(t->m, obj + AIO_CFUNC_ML_OFF, &p) == ERR_OK && p &&
            mem_read_u64(t->m, p, &p) == ERR_OK && p && py_read_cstr(t, p, buf, cap) != ERR_OK) {
            buf[0] = 0;
        }
    } else if (py_type_name(t, type, tname, sizeof tname) == ERR_OK &&
               strcmp(tname, "method_descriptor") == 0 &&
               mem_read_u64(t->m, obj + AIO_DESCR_NAME_OFF, &p) == ERR_OK &&
               py_read_str_buf(t, p, buf, cap) != ERR_OK) {
        buf[0] = 0;
    }
}

static bool aio_func_qualname_is(py_target *t, uint64_t func, const char *want) {
    uint64_t type, qn;
    char name[64];
    return py_type_of(t, func, &type) == ERR_OK && type == t->types.function &&
           mem_read_u64(t->m, func + (uint64_t)t->L.func_qualname, &qn) == ERR_OK &&
           py_read_str_buf(t, qn, name, sizeof name) == ERR_OK && strcmp(name, want) == 0;
}

/* The threading lock whose `with` exit starts at slots[i], or 0: a bound
 * builtin __exit__ of a lock (3.11-3.13), a method descriptor __exit__
 * then the lock (3.14+), or threading.Condition.__exit__ (bound, or the
 * function then the condition) standing for the condition's lock. */
static uint64_t aio_exit_lock(py_target *t, const uint64_t *slots, int n, int i, bool checked) {
    uint64_t o = slots[i], type, self = 0, lock = 0, func = 0, count;
    bool immortal;
    char name[AIO_TNAME_MAX];
    if (!o || py_type_of(t, o, &type) != ERR_OK) {
        return 0;
    }
    /* A fresh bound method per `with` (3.11-3.13, where the executing
     * frame's slots are not vouched for by a stack pointer): a freed one
     * (count 0) or a shared one is stale. */
    if (!checked && (py_refcount(t, o, &count, &immortal) != ERR_OK || immortal || count == 0 ||
                     count > AIO_TEXIT_REFS_MAX)) {
        return 0;
    }
    if (type == t->types.cfunction) {
        aio_cmethod_name(t, o, type, name, sizeof name);
        if (strcmp(name, "__exit__") == 0 &&
            mem_read_u64(t->m, o + (uint64_t)t->L.cfunc_self, &self) == ERR_OK &&
            aio_lock_kind(t, self) != AIO_LK_NONE) {
            return self;
        }
        return 0;
    }
    if (type == t->types.method) {
        mem_read_u64(t->m, o + (uint64_t)t->L.meth_func, &func);
        mem_read_u64(t->m, o + (uint64_t)t->L.meth_self, &self);
    } else if (type == t->types.function && i + 1 < n) {
        func = o;
        self = slots[i + 1];
    } else if (i + 1 < n) {
        aio_cmethod_name(t, o, type, name, sizeof name);
        if (strcmp(name, "__exit__") == 0 && aio_lock_kind(t, slots[i + 1]) != AIO_LK_NONE) {
            return slots[i + 1];
        }
        return 0;
    }
    if (func && self && aio_func_qualname_is(t, func, "Condition.__exit__") &&
        py_attr(t, self, "_lock", &lock) == ERR_OK && aio_lock_kind(t, lock) != AIO_LK_NONE) {
        return lock;
    }
    return 0;
}

/* Frame k of th: the threading locks it is inside `with` of (held, oldest
 * first, unique) and, for the innermost frame, the lock it is entering
 * now (*entering, 0 if none). Below the innermost frame the stack pointer
 * is exact; the innermost one's is only from 3.14 (kept across calls):
 * before, every slot the code can use is scanned, and the instruction
 * tells whether it is entering a `with`. */
static void aio_frame_tlocks(py_target *t, const aio_thread *th, size_t k, vec *held,
                             uint64_t *entering) {
    const aio_frame *f = VEC_AT(&th->frames, aio_frame, k);
    const aio_with_rules *rules = aio_with_for(t);
    uint32_t stacksize = 0;
    held->len = 0;
    if (entering) {
        *entering = 0;
    }
    if (!rules || !aio_frame_code(f) || aio_frame_nlocals(f) < 0) {
        return;
    }
    bool exact = k > 0 || rules->before_with == 0;
    int n = 0;
    if (exact) {
        if (f->depth < 0) {
            return;
        }
        n = f->depth;
    } else if (mem_read_u32(t->m, aio_frame_code(f) + (uint64_t)t->L.co_stacksize, &stacksize) ==
               ERR_OK) {
        n = (int)stacksize;
    }
    if (n > AIO_TSTACK_SCAN_MAX) {
        n = AIO_TSTACK_SCAN_MAX;
    }
    uint64_t slots[AIO_TSTACK_SCAN_MAX];
    for (int i = 0; i < n; i++) {
        if (py_frame_slot(t, f->addr, aio_frame_nlocals(f) + i, &slots[i]) != ERR_OK) {
            slots[i] = 0;
        }
    }
    if (!exact) {
        /* The executing frame's slots past its real top are stale: trust
         * them only while it enters a `with`, where the top is known. On
         * 3.12 and 3.13 the context manager being entered is still on the
         * stack, the first plain lock there (below it only exits, loop
         * iterators and exception state); what lies above it is stale. */
        py_frame pf;
        uint8_t op;
        if (py_frame_read(t, f->addr, &pf) != ERR_OK ||
            mem_read(t->m, pf.instr, 1, &op) != ERR_OK || op != rules->before_with) {
            return;
        }
        for (int i = 0; i < n && !rules->exit_first; i++) {
            if (aio_lock_kind(t, slots[i]) != AIO_LK_NONE) {
                if (entering) {
                    *entering = slots[i];
                }
                n = i;
                break;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        uint64_t lock = aio_exit_lock(t, slots, n, i, exact);
        if (lock && !u64vec_has(held, lock)) {
            u64vec_push(held, lock);
        }
    }
    if (!entering || k > 0) {
        return;
    }
    if (exact) {
        /* 3.14+: the call in progress is on top: __enter__ or acquire, a
         * method descriptor, then the lock it is called on. */
        char name[AIO_TNAME_MAX];
        uint64_t type;
        if (n >= 2 && aio_lock_kind(t, slots[n - 1]) != AIO_LK_NONE &&
            py_type_of(t, slots[n - 2], &type) == ERR_OK) {
            aio_cmethod_name(t, slots[n - 2], type, name, sizeof name);
            if (strcmp(name, "__enter__") == 0 || strcmp(name, "acquire") == 0) {
                *entering = slots[n - 1];
            }
            /* Its own `with` pushed the exit just below: not held yet. */
            if (strcmp(name, "__enter__") == 0 && held->len &&
                *VEC_AT(held, uint64_t, held->len - 1) == *entering) {
                held->len--;
            }
        }
        return;
    }
    /* 3.11 put the exit of the `with` being entered on the stack first. */
    if (rules->exit_first && held->len) {
        *entering = *VEC_AT(held, uint64_t, held->len - 1);
        held->len--;
    }
}

typedef struct aio_twait_rule {
    const char *qualname;
    const char *file; /* the file's name ends so */
    aio_kind kind;
    int timeout_slot; /* local holding the timeout (None: forever) */
    int block_slot;   /* local holding `block` (False: never waits), -1 */
} aio_twait_rule;

/* The standard library's blocking calls, by their Python frames; the
 * outermost one of a run of such frames says what the thread waits for
 * (Event.wait waits in a Condition.wait). */
static const aio_twait_rule aio_twait_rules[] = {
    {"Future.result", "concurrent/futures/_base.py", AIO_KIND_CFUTURE, 1, -1},
    {"Event.wait", "/threading.py", AIO_KIND_THREAD_EVENT, 1, -1},
    {"Condition.wait", "/threading.py", AIO_KIND_THREAD_CONDITION, 1, -1},
    {"Condition.wait_for", "/threading.py", AIO_KIND_THREAD_CONDITION, 2, -1},
    {"Queue.get", "/queue.py", AIO_KIND_THREAD_QUEUE, 2, 1},
    {"Queue.put", "/queue.py", AIO_KIND_THREAD_QUEUE, 3, 2},
    /* `with cond:` enters the condition's lock from Python. */
    {"Condition.__enter__", "/threading.py", AIO_KIND_THREAD_LOCK, -1, -1},
};

static bool aio_stdlib_wait_file(const char *file) {
    return aio_tends_with(file, "/threading.py") || aio_tends_with(file, "/queue.py") ||
           aio_tends_with(file, "concurrent/futures/_base.py");
}

/* What a work item calls: a function's or bound method's qualname, a
 * partial's function, else the callable's type name. */
static void aio_callable_name(py_target *t, uint64_t fn, char *buf, size_t cap) {
    uint64_t type, qn, inner;
    char tname[64];
    buf[0] = 0;
    if (!fn || py_type_of(t, fn, &type) != ERR_OK) {
        return;
    }
    if (type == t->types.method &&
        mem_read_u64(t->m, fn + (uint64_t)t->L.meth_func, &inner) == ERR_OK && inner &&
        py_type_of(t, inner, &type) == ERR_OK) {
        fn = inner;
    }
    if (type == t->types.function &&
        mem_read_u64(t->m, fn + (uint64_t)t->L.func_qualname, &qn) == ERR_OK &&
        py_read_str_buf(t, qn, buf, cap) == ERR_OK) {
        return;
    }
    if (py_type_name(t, type, tname, sizeof tname) != ERR_OK) {
        return;
    }
    if (strcmp(tname, "functools.partial") == 0 &&
        mem_read_u64(t->m, fn + AIO_PARTIAL_FN_OFF, &inner) == ERR_OK && inner != fn) {
        char in[96];
        aio_callable_name(t, inner, in, sizeof in);
        snprintf(buf, cap, "partial(%s)", in[0] ? in : "?");
        return;
    }
    snprintf(buf, cap, "%s", tname);
}

/* The _WorkItem an executor worker runs: its future and its callable
 * (`fn` to 3.13; from 3.14 `task`, a (fn, args, kwargs) tuple). */
static void aio_work_item(py_target *t, aio_thread *th, const aio_frame *f) {
    uint64_t item = 0, fut = 0, fn = 0, task = 0;
    if (py_frame_slot(t, f->addr, 0, &item) != ERR_OK || !item ||
        py_attr(t, item, "future", &fut) != ERR_OK || !fut) {
        return;
    }
    th->work_item = item;
    th->work_future = fut;
    if (py_attr(t, item, "fn", &fn) != ERR_OK || !fn) {
        vec items;
        vec_init(&items, sizeof(uint64_t));
        if (py_attr(t, item, "task", &task) == ERR_OK && task &&
            py_tuple_items(t, task, &items) == ERR_OK && items.len) {
            fn = *VEC_AT(&items, uint64_t, 0);
        } else {
            fn = task;
        }
        vec_free(&items);
    }
    aio_callable_name(t, fn, th->work_fn, sizeof th->work_fn);
}

void aio_thread_waits(py_target *t, aio_thread *th) {
    const aio_twait_rule *rule = NULL;
    const aio_frame *at = NULL;
    for (size_t k = 0; k < th->frames.len; k++) {
        const aio_frame *f = VEC_AT(&th->frames, aio_frame, k);
        if (aio_frame_function(f) && strcmp(aio_frame_function(f), "_WorkItem.run") == 0 &&
            aio_tends_with(aio_frame_file(f), "concurrent/futures/thread.py")) {
            aio_work_item(t, th, f);
        }
    }
    for (size_t k = 0; k < th->frames.len; k++) {
        const aio_frame *f = VEC_AT(&th->frames, aio_frame, k);
        if (!aio_frame_function(f) || !aio_stdlib_wait_file(aio_frame_file(f))) {
            break;
        }
        for (size_t r = 0; r < ARRAY_LEN(aio_twait_rules); r++) {
            if (strcmp(aio_frame_function(f), aio_twait_rules[r].qualname) == 0 &&
                aio_tends_with(aio_frame_file(f), aio_twait_rules[r].file)) {
                rule = &aio_twait_rules[r];
                at = f;
            }
        }
    }
    uint64_t obj = 0, v = 0;
    bool timeout = false;
    if (rule && rule->kind == AIO_KIND_THREAD_LOCK) {
        if (py_frame_slot(t, at->addr, 0, &v) != ERR_OK || !v ||
            py_attr(t, v, "_lock", &obj) != ERR_OK) {
            obj = 0;
        }
    } else if (rule) {
        if (py_frame_slot(t, at->addr, 0, &obj) != ERR_OK) {
            obj = 0;
        }
        if (rule->block_slot >= 0 && py_frame_slot(t, at->addr, rule->block_slot, &v) == ERR_OK &&
            v == t->types.false_) {
            return; /* a non-blocking get or put does not wait */
        }
        timeout =
            rule->timeout_slot >= 0 &&
            (py_frame_slot(t, at->addr, rule->timeout_slot, &v) != ERR_OK || v != t->types.none);
    } else if (th->frames.len) {
        vec held;
        vec_init(&held, sizeof(uint64_t));
        aio_frame_tlocks(t, th, 0, &held, &obj);
        vec_free(&held);
    }
    if (!obj) {
        return;
    }
    th->waits_kind = rule ? rule->kind : AIO_KIND_THREAD_LOCK;
    th->waits_on = obj;
    th->waits_timeout = timeout;
    uint64_t type;
    if (py_type_of(t, obj, &type) == ERR_OK) {
        py_type_name(t, type, th->waits_type, sizeof th->waits_type);
    }
}

/* The resource with this id if the build has one already, else NULL. */
static aio_resource *aio_resource_known(aio_ctx *c, uint64_t id) {
    uint64_t idx;
    return u64map_get(&c->resource_index, id, &idx)
               ? VEC_AT(&c->model->resources, aio_resource, idx)
               : NULL;
}

/* The condition locks th released by waiting in Condition.wait (threading
 * primitives built on a Condition wait in one too). */
static void aio_released_locks(py_target *t, const aio_thread *th, vec *out) {
    for (size_t k = 0; k < th->frames.len; k++) {
        const aio_frame *f = VEC_AT(&th->frames, aio_frame, k);
        uint64_t cond = 0, lock = 0;
        if (aio_frame_function(f) && aio_tends_with(aio_frame_file(f), "/threading.py") &&
            (strcmp(aio_frame_function(f), "Condition.wait") == 0 ||
             strcmp(aio_frame_function(f), "Condition.wait_for") == 0) &&
            py_frame_slot(t, f->addr, 0, &cond) == ERR_OK && cond &&
            py_attr(t, cond, "_lock", &lock) == ERR_OK && lock) {
            u64vec_add_unique(out, lock);
        }
    }
}

/* Who holds each threading lock some thread waits for: the threads whose
 * frames are inside `with` on it (a Lock records no owner), or the owner
 * an RLock records. */
static err_t aio_tlock_holders(aio_ctx *c) {
    py_target *t = c->t;
    aio_model *m = c->model;
    vec held, released;
    vec_init(&held, sizeof(uint64_t));
    vec_init(&released, sizeof(uint64_t));
    err_t e = ERR_OK;
    /* Every frame of every thread is read only when some thread waits for
     * a threading lock: a holder matters to nobody else. */
    bool wanted = false;
    for (size_t j = 0; j < m->resources.len && !wanted; j++) {
        wanted = VEC_AT(&m->resources, aio_resource, j)->kind == AIO_KIND_THREAD_LOCK;
    }
    for (size_t i = 0; wanted && i < m->threads.len && e == ERR_OK; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        released.len = 0;
        aio_released_locks(t, th, &released);
        for (size_t k = 0; k < th->frames.len && e == ERR_OK; k++) {
            uint64_t entering;
            aio_frame_tlocks(t, th, k, &held, k == 0 ? &entering : NULL);
            for (size_t h = 0; h < held.len && e == ERR_OK; h++) {
                uint64_t lock = *VEC_AT(&held, uint64_t, h), owner;
                aio_resource *r = aio_resource_known(c, lock);
                if (!r || r->kind != AIO_KIND_THREAD_LOCK || u64vec_has(&released, lock) ||
                    aio_lock_kind(t, lock) != AIO_LK_LOCK || !aio_tlock_held(t, lock, &owner)) {
                    continue;
                }
                e = u64vec_add_unique(&r->thread_holders, (uint64_t)th->native_id) ? ERR_OK
                                                                                   : ERR_NOMEM;
            }
        }
    }
    vec_free(&held);
    vec_free(&released);
    for (size_t j = 0; j < m->resources.len && e == ERR_OK; j++) {
        aio_resource *r = VEC_AT(&m->resources, aio_resource, j);
        uint64_t owner;
        if (r->kind != AIO_KIND_THREAD_LOCK || aio_lock_kind(t, r->id) != AIO_LK_RLOCK ||
            !aio_tlock_held(t, r->id, &owner)) {
            continue;
        }
        for (size_t i = 0; i < m->threads.len; i++) {
            const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
            if (th->ident == owner &&
                !u64vec_add_unique(&r->thread_holders, (uint64_t)th->native_id)) {
                e = ERR_NOMEM;
            }
        }
    }
    return e;
}

/* The function in a concurrent future's _done_callbacks whose qualname
 * contains needle, or 0. */
static uint64_t aio_cf_callback(aio_ctx *c, uint64_t cf, const char *needle) {
    py_target *t = c->t;
    uint64_t list = 0, found = 0;
    vec cbs;
    vec_init(&cbs, sizeof(uint64_t));
    if (py_attr(t, cf, "_done_callbacks", &list) == ERR_OK && list &&
        py_list_items(t, list, &cbs) == ERR_OK) {
        found = aio_function_named(c, &cbs, needle);
    }
    vec_free(&cbs);
    return found;
}

/* The loop whose ready queue holds run_coroutine_threadsafe's callback
 * for concurrent future cf (its closure's `future`), or NULL: until that
 * loop's thread runs it, no task exists that could complete cf. */
static const aio_loop *aio_cf_queued_on(aio_ctx *c, uint64_t cf) {
    py_target *t = c->t;
    const aio_loop *found = NULL;
    vec handles;
    vec_init(&handles, sizeof(uint64_t));
    for (size_t i = 0; i < c->model->loops.len && !found; i++) {
        const aio_loop *l = VEC_AT(&c->model->loops, aio_loop, i);
        uint64_t ready = 0;
        handles.len = 0;
        if (!l->thread || py_attr(t, l->id, "_ready", &ready) != ERR_OK || !ready ||
            py_deque_items(t, ready, &handles) != ERR_OK) {
            continue;
        }
        for (size_t k = 0; k < handles.len && !found; k++) {
            uint64_t cb = 0, fut = 0;
            if (py_slot(t, *VEC_AT(&handles, uint64_t, k), "_callback", &cb) == ERR_OK && cb &&
                py_func_closure_var(t, cb, "future", &fut) == ERR_OK && fut == cf) {
                found = l;
            }
        }
    }
    vec_free(&handles);
    return found;
}

err_t aio_thread_resources(aio_ctx *c) {
    py_target *t = c->t;
    aio_model *m = c->model;
    /* An asyncio future chained to a concurrent one (run_in_executor,
     * wrap_future): _chain_future's _call_check_cancel on it closes over
     * the concurrent future as `source`. Indices, not pointers: adding a
     * resource may move them. */
    size_t nres = m->resources.len;
    for (size_t j = 0; j < nres; j++) {
        aio_resource *r = VEC_AT(&m->resources, aio_resource, j);
        uint64_t cb, src = 0;
        if (r->kind != AIO_KIND_EXECUTOR ||
            !(cb = aio_callback_named(c, r->future ? r->future : r->id, "_call_check_cancel")) ||
            py_func_closure_var(t, cb, "source", &src) != ERR_OK || !src ||
            aio_object_kind(c, src) != AIO_OBJ_OTHER) {
            continue;
        }
        r->chained = src;
        if (!aio_resource_get(c, src, AIO_KIND_CFUTURE)) {
            return ERR_NOMEM;
        }
    }
    for (size_t i = 0; i < m->threads.len; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        aio_resource *r;
        if (th->waits_kind == AIO_KIND_NONE) {
            continue;
        }
        if (!(r = aio_resource_get(c, th->waits_on, th->waits_kind)) ||
            !u64vec_add_unique(&r->thread_waiters, (uint64_t)th->native_id)) {
            return ERR_NOMEM;
        }
    }
    /* Which worker completes which concurrent future; which task a
     * run_coroutine_threadsafe future stands for (_chain_future(task,
     * future) left _call_check_cancel, closing over the task, on it). */
    for (size_t i = 0; i < m->threads.len; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        aio_resource *r = th->work_future ? aio_resource_known(c, th->work_future) : NULL;
        if (r && !u64vec_add_unique(&r->thread_holders, (uint64_t)th->native_id)) {
            return ERR_NOMEM;
        }
    }
    for (size_t j = 0; j < m->resources.len; j++) {
        aio_resource *r = VEC_AT(&m->resources, aio_resource, j);
        uint64_t cb, src = 0;
        if (r->kind != AIO_KIND_CFUTURE) {
            continue;
        }
        if ((cb = aio_cf_callback(c, r->id, "_call_check_cancel")) &&
            py_func_closure_var(t, cb, "source", &src) == ERR_OK && aio_is_task(c, src)) {
            if (!u64vec_add_unique(&r->members, src)) {
                return ERR_NOMEM;
            }
            continue;
        }
        /* Not started yet: only the loop thread can start it. The loop
         * thread waiting on it itself is loop-self-wait, not a ring. */
        const aio_loop *l = r->thread_waiters.len ? aio_cf_queued_on(c, r->id) : NULL;
        if (l && !u64vec_has(&r->thread_waiters, (uint64_t)l->thread) &&
            !u64vec_add_unique(&r->thread_holders, (uint64_t)l->thread)) {
            return ERR_NOMEM;
        }
    }
    return aio_tlock_holders(c);
}
