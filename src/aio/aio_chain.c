/* A task's await chain: from its coroutine through coroutines, generators,
 * async generators and their asend/athrow objects and coroutine wrappers to
 * the innermost frame; then what that frame waits on, typed by the asyncio
 * frames around it (Lock.acquire, Queue.get, sleep, TaskGroup...) and by the
 * future it is blocked on. */
#include "aio_int.h"

#include <stdio.h>
#include <string.h>

/* Wrapper objects that hold the next link of a chain at one word after the
 * object header: FutureIter's future, asend/athrow's generator, a coroutine
 * wrapper's coroutine. */
#define AIO_WRAPPED_OFF 16
/* Callbacks of one future we look at. */
#define AIO_CALLBACKS_MAX 64
/* asyncio.wait's return_when, a name: the longest is "FIRST_COMPLETED". */
#define AIO_WAIT_MODE_MAX 32

typedef struct aio_frame_rule {
    const char *qualname;
    aio_kind kind;
    bool by_future; /* `self` is the event loop: the future is the resource */
} aio_frame_rule;

/* A framework's frame rule, whose resource may not be `self`: an attribute
 * of `self` (anyio's memory streams share their `_state`), or `self` of the
 * next outer frame when that frame runs outer_function (httpcore's pool). */
typedef struct aio_fw_rule {
    aio_frame_rule rule;
    const char *self_attr;
    const char *outer_function;
} aio_fw_rule;

/* asyncio's own coroutine frames that say what a task waits for; `self` of
 * the outermost match is the resource (a Barrier waits through a Condition:
 * the Barrier wins). */
static const aio_frame_rule aio_rules[] = {
    {"Lock.acquire", AIO_KIND_LOCK, false},
    {"Semaphore.acquire", AIO_KIND_SEMAPHORE, false},
    {"BoundedSemaphore.acquire", AIO_KIND_SEMAPHORE, false},
    {"Condition.wait", AIO_KIND_CONDITION, false},
    {"Condition.wait_for", AIO_KIND_CONDITION, false},
    {"Event.wait", AIO_KIND_EVENT, false},
    {"Queue.get", AIO_KIND_QUEUE, false},
    {"Queue.put", AIO_KIND_QUEUE, false},
    {"Queue.join", AIO_KIND_QUEUE, false},
    {"Barrier.wait", AIO_KIND_BARRIER, false},
    {"Barrier._block", AIO_KIND_BARRIER, false},
    {"Barrier._wait", AIO_KIND_BARRIER, false},
    {"TaskGroup.__aexit__", AIO_KIND_TASKGROUP, false},
    {"TaskGroup._aexit", AIO_KIND_TASKGROUP, false},
    {"StreamReader._wait_for_data", AIO_KIND_IO, false},
    {"StreamReader.read", AIO_KIND_IO, false},
    {"StreamReader.readline", AIO_KIND_IO, false},
    {"StreamReader.readuntil", AIO_KIND_IO, false},
    {"StreamReader.readexactly", AIO_KIND_IO, false},
    {"BaseSelectorEventLoop.sock_recv", AIO_KIND_IO, true},
    {"BaseSelectorEventLoop.sock_recv_into", AIO_KIND_IO, true},
    {"BaseSelectorEventLoop.sock_recvfrom", AIO_KIND_IO, true},
    {"BaseSelectorEventLoop.sock_accept", AIO_KIND_IO, true},
    {"BaseSelectorEventLoop.sock_connect", AIO_KIND_IO, true},
    {"BaseSelectorEventLoop.sock_sendall", AIO_KIND_IO, true},
    {"StreamWriter.drain", AIO_KIND_IO, false},
};

/* anyio on the asyncio backend (anyio/_backends/_asyncio.py and
 * anyio/_core/, anyio/streams/memory.py): its Lock, Semaphore, Event,
 * Condition and TaskGroup share asyncio's qualnames above; these are its
 * own. A CapacityLimiter counts like a semaphore; a memory object
 * stream is a queue whose resource is the state both ends share.
 * httpcore's pool (what httpx sends through): a request waiting for a
 * connection waits on the pool, a counted resource like a semaphore. */
static const aio_fw_rule aio_fw_rules[] = {
    {{"CapacityLimiter.acquire", AIO_KIND_SEMAPHORE, false}, NULL, NULL},
    {{"CapacityLimiter.acquire_on_behalf_of", AIO_KIND_SEMAPHORE, false}, NULL, NULL},
    {{"MemoryObjectReceiveStream.receive", AIO_KIND_QUEUE, false}, "_state", NULL},
    {{"MemoryObjectSendStream.send", AIO_KIND_QUEUE, false}, "_state", NULL},
    {{"AsyncPoolRequest.wait_for_connection", AIO_KIND_SEMAPHORE, false},
     NULL,
     "AsyncConnectionPool.handle_async_request"},
};

/* Resources keyed by the future itself rather than by `self`. */
static bool aio_rule_keys_future(aio_kind k) {
    return k == AIO_KIND_SLEEP;
}

/* Library frames the classification looks through: asyncio's own, and the
 * frameworks built on it whose primitives are modelled (anyio, httpcore). */
static bool aio_is_asyncio_file(const char *file) {
    return file && (strstr(file, "/asyncio/") != NULL || strstr(file, "/anyio/") != NULL ||
                    strstr(file, "/httpcore/") != NULL);
}

static err_t aio_push_chain_frame(aio_ctx *c, aio_task *task, uint64_t frame_addr,
                                  const py_frame *f) {
    aio_frame *af = vec_push(&task->frames);
    if (!af) {
        return ERR_NOMEM;
    }
    af->addr = frame_addr;
    af->line = f ? f->line : -1;
    af->depth = f && f->is_python ? f->stack_depth : -1;
    if (f && f->is_python &&
        !aio_frame_names(c->model, af, f->code, f->qualname, f->filename, f->nlocalsplus)) {
        return ERR_NOMEM;
    }
    return ERR_OK;
}

static bool aio_type_named(aio_ctx *c, uint64_t obj, const char *name) {
    uint64_t type;
    const char *have;
    return py_type_of(c->t, obj, &type) == ERR_OK && (have = aio_type_name(c, type)) != NULL &&
           strcmp(have, name) == 0;
}

aio_resource *aio_resource_get(aio_ctx *c, uint64_t id, aio_kind kind) {
    aio_model *m = c->model;
    uint64_t idx;
    if (u64map_get(&c->resource_index, id, &idx)) {
        return VEC_AT(&m->resources, aio_resource, idx);
    }
    aio_resource *r = vec_push(&m->resources);
    if (!r || !u64map_put(&c->resource_index, id, m->resources.len - 1)) {
        return NULL;
    }
    aio_resource_init(r, id, kind);
    uint64_t type;
    if (py_type_of(c->t, id, &type) == ERR_OK) {
        py_type_name(c->t, type, r->type, sizeof r->type);
        aio_fw_type_name(c, id, type, r->type, sizeof r->type);
    }
    aio_fw_resource_added(c, r);
    return r;
}

/* Callback functions registered on a future (C: callback0 + a list of
 * (callback, context) tuples; Python: _callbacks). */
static void aio_future_callbacks(aio_ctx *c, uint64_t fut, vec *out) {
    py_target *t = c->t;
    uint64_t list = 0;
    if (aio_object_kind(c, fut) == AIO_OBJ_C_FUTURE || aio_object_kind(c, fut) == AIO_OBJ_C_TASK) {
        uint64_t cb0;
        if (mem_read_u64(t->m, fut + (uint64_t)c->A.fut_callback0, &cb0) == ERR_OK && cb0) {
            u64vec_add_unique(out, cb0);
        }
        mem_read_u64(t->m, fut + (uint64_t)c->A.fut_callbacks, &list);
    } else {
        py_attr(t, fut, "_callbacks", &list);
    }
    if (!list || list == t->types.none) {
        return;
    }
    vec pairs, pair;
    vec_init(&pairs, sizeof(uint64_t));
    vec_init(&pair, sizeof(uint64_t));
    if (py_list_items(t, list, &pairs) == ERR_OK) {
        for (size_t i = 0; i < pairs.len && i < AIO_CALLBACKS_MAX; i++) {
            pair.len = 0;
            if (py_tuple_items(t, *VEC_AT(&pairs, uint64_t, i), &pair) == ERR_OK && pair.len) {
                u64vec_add_unique(out, *VEC_AT(&pair, uint64_t, 0));
            }
        }
    }
    vec_free(&pairs);
    vec_free(&pair);
}

uint64_t aio_function_named(aio_ctx *c, const vec *cbs, const char *needle) {
    py_target *t = c->t;
    for (size_t i = 0; i < cbs->len; i++) {
        uint64_t cb = *VEC_AT(cbs, uint64_t, i), type, qn;
        char buf[128];
        if (py_type_of(t, cb, &type) == ERR_OK && type == t->types.function &&
            mem_read_u64(t->m, cb + (uint64_t)t->L.func_qualname, &qn) == ERR_OK &&
            py_read_str_buf(t, qn, buf, sizeof buf) == ERR_OK && strstr(buf, needle)) {
            return cb;
        }
    }
    return 0;
}

uint64_t aio_callback_named(aio_ctx *c, uint64_t fut, const char *needle) {
    vec cbs;
    vec_init(&cbs, sizeof(uint64_t));
    aio_future_callbacks(c, fut, &cbs);
    uint64_t found = aio_function_named(c, &cbs, needle);
    vec_free(&cbs);
    return found;
}

static err_t aio_add_members_from(aio_ctx *c, aio_resource *r, const vec *items) {
    u64set seen;
    u64set_init(&seen);
    err_t e = ERR_OK;
    for (size_t i = 0; i < items->len && e == ERR_OK; i++) {
        uint64_t o = *VEC_AT(items, uint64_t, i);
        int added = u64set_add(&seen, o);
        uint64_t *slot;
        if (added < 0) {
            e = ERR_NOMEM;
        } else if (added && aio_is_task(c, o)) {
            aio_state st = aio_task_state(c, o);
            if ((slot = vec_push(&r->members)) == NULL) {
                e = ERR_NOMEM;
            } else {
                *slot = o;
            }
            /* Ended members wake nothing any more: a ring need not hold them. */
            r->members_ended += st == AIO_STATE_DONE || st == AIO_STATE_CANCELLED;
        }
    }
    u64set_free(&seen);
    return e;
}

/* Fills a combinator resource's members: gather children, TaskGroup tasks,
 * shield's inner task. */
static err_t aio_members(aio_ctx *c, aio_resource *r) {
    py_target *t = c->t;
    vec items;
    vec_init(&items, sizeof(uint64_t));
    uint64_t v = 0;
    err_t e = ERR_OK;
    if (r->kind == AIO_KIND_GATHER && py_attr(t, r->id, "_children", &v) == ERR_OK && v) {
        py_list_items(t, v, &items);
    } else if (r->kind == AIO_KIND_TASKGROUP && py_attr(t, r->id, "_tasks", &v) == ERR_OK && v) {
        py_set_items(t, v, &items);
    } else if (r->kind == AIO_KIND_SHIELD) {
        /* The callback closes over `inner` (and, from 3.14, the awaiting
         * `cur_task`, which is no member). */
        uint64_t cb = aio_callback_named(c, r->id, "_outer_done_callback"), inner = 0;
        uint64_t *slot;
        if (cb && py_func_closure_var(t, cb, "inner", &inner) == ERR_OK && inner) {
            if (!(slot = vec_push(&items))) {
                vec_free(&items);
                return ERR_NOMEM;
            }
            *slot = inner;
        }
    }
    e = aio_add_members_from(c, r, &items);
    vec_free(&items);
    return e;
}

/* asyncio.wait's tasks and how they wake it, from its helper's frame:
 * _wait(fs, timeout, return_when, loop) keeps its arguments in its first
 * slots, return_when in a cell (its callback closes over it). What cannot
 * be read is taken the way that claims least: a timeout that may release
 * it, and any one task's end waking it. */
static err_t aio_wait_members(aio_ctx *c, aio_resource *r, const aio_frame *f) {
    py_target *t = c->t;
    uint64_t fs = 0, timeout = 0, when = 0, type;
    char mode[AIO_WAIT_MODE_MAX] = "";
    r->wait_timed =
        py_frame_slot(t, f->addr, 1, &timeout) != ERR_OK || !timeout || timeout != t->types.none;
    if (py_frame_slot(t, f->addr, 2, &when) == ERR_OK && when &&
        py_type_of(t, when, &type) == ERR_OK && type == t->types.cell &&
        mem_read_u64(t->m, when + (uint64_t)t->L.cell_ref, &when) != ERR_OK) {
        when = 0;
    }
    if (when && py_read_str_buf(t, when, mode, sizeof mode) == ERR_OK) {
        r->wait_when = strcmp(mode, "ALL_COMPLETED") == 0     ? AIO_WAIT_ALL
                       : strcmp(mode, "FIRST_EXCEPTION") == 0 ? AIO_WAIT_ERROR
                                                              : AIO_WAIT_FIRST;
        snprintf(r->detail, sizeof r->detail, "%s", mode);
    } else {
        r->wait_when = AIO_WAIT_FIRST;
    }
    vec items;
    vec_init(&items, sizeof(uint64_t));
    err_t e = ERR_OK;
    if (py_frame_slot(t, f->addr, 0, &fs) == ERR_OK && fs &&
        py_set_items(t, fs, &items) == ERR_OK) {
        e = aio_add_members_from(c, r, &items);
    }
    vec_free(&items);
    return e;
}

/* What aio_classify reads of a frame's function, worked out once per
 * function: its name is pooled per code object (aio_frame_names), so the
 * pointer is the key, and a million tasks share a few dozen such frames,
 * each of which was matched against every rule by name. */
#define AIO_FR_LIBRARY 1u  /* in a library the classification looks through */
#define AIO_FR_WAIT_FOR 2u /* asyncio.wait_for */
#define AIO_FR_SLEEP 4u    /* asyncio.sleep */
#define AIO_FR_WAIT 8u     /* asyncio.wait's helper, _wait */
/* Bit AIO_FR_RULE + k: aio_rules[k] names it; AIO_FR_FW_RULE + k likewise. */
#define AIO_FR_RULE 8
#define AIO_FR_FW_RULE 40
_Static_assert(ARRAY_LEN(aio_rules) <= AIO_FR_FW_RULE - AIO_FR_RULE, "rule bits overlap");
_Static_assert(ARRAY_LEN(aio_fw_rules) <= 64 - AIO_FR_FW_RULE, "too many framework rules");

static uint64_t aio_frame_rules(aio_ctx *c, const aio_frame *f) {
    uint64_t v, key = (uint64_t)(uintptr_t)aio_frame_function(f);
    if (u64map_get(&c->frame_rules, key, &v)) {
        return v;
    }
    v = 0;
    if (aio_is_asyncio_file(aio_frame_file(f))) {
        v |= AIO_FR_LIBRARY;
        v |= strcmp(aio_frame_function(f), "wait_for") == 0 ? AIO_FR_WAIT_FOR : 0;
        v |= strcmp(aio_frame_function(f), "sleep") == 0 ? AIO_FR_SLEEP : 0;
        v |= strcmp(aio_frame_function(f), "_wait") == 0 ? AIO_FR_WAIT : 0;
        for (size_t k = 0; k < ARRAY_LEN(aio_rules); k++) {
            v |= strcmp(aio_frame_function(f), aio_rules[k].qualname) == 0
                     ? (uint64_t)1 << (AIO_FR_RULE + k)
                     : 0;
        }
        for (size_t k = 0; k < ARRAY_LEN(aio_fw_rules); k++) {
            v |= strcmp(aio_frame_function(f), aio_fw_rules[k].rule.qualname) == 0
                     ? (uint64_t)1 << (AIO_FR_FW_RULE + k)
                     : 0;
        }
    }
    u64map_put(&c->frame_rules, key, v); /* a lost entry costs time only */
    return v;
}

/* Classifies what the task waits on and records the resource. */
static err_t aio_classify(aio_ctx *c, aio_task *task, uint64_t awaited) {
    py_target *t = c->t;
    if (!awaited || awaited == t->types.none) {
        task->waits_kind = AIO_KIND_NONE;
        return ERR_OK;
    }
    /* asyncio's own frames, innermost outwards, while they last. */
    aio_kind kind = AIO_KIND_NONE;
    uint64_t self = 0;
    bool in_wait_for = false;
    const aio_frame *wait_frame = NULL; /* asyncio.wait's _wait, awaiting its waiter */
    for (size_t i = 0; i < task->frames.len; i++) {
        const aio_frame *f = VEC_AT(&task->frames, aio_frame, i);
        uint64_t fr = aio_frame_function(f) ? aio_frame_rules(c, f) : 0;
        if (!(fr & AIO_FR_LIBRARY)) {
            break;
        }
        if (fr & AIO_FR_WAIT_FOR) {
            in_wait_for = true;
        }
        if ((fr & AIO_FR_WAIT) && !wait_frame) {
            wait_frame = f;
        }
        if (fr & AIO_FR_SLEEP) {
            kind = AIO_KIND_SLEEP;
            self = 0;
        }
        for (size_t k = 0; k < ARRAY_LEN(aio_rules); k++) {
            if (fr & (uint64_t)1 << (AIO_FR_RULE + k)) {
                kind = aio_rules[k].kind;
                self = 0;
                if (!aio_rules[k].by_future) {
                    py_frame_slot(t, f->addr, 0, &self);
                }
            }
        }
        for (size_t k = 0; k < ARRAY_LEN(aio_fw_rules); k++) {
            const aio_fw_rule *rule = &aio_fw_rules[k];
            const aio_frame *outer =
                i + 1 < task->frames.len ? VEC_AT(&task->frames, aio_frame, i + 1) : NULL;
            if (!(fr & (uint64_t)1 << (AIO_FR_FW_RULE + k))) {
                continue;
            }
            kind = rule->rule.kind;
            self = 0;
            if (!rule->outer_function) {
                py_frame_slot(t, f->addr, 0, &self);
            } else if (outer && aio_frame_function(outer) &&
                       strcmp(aio_frame_function(outer), rule->outer_function) == 0) {
                py_frame_slot(t, outer->addr, 0, &self);
            }
            if (self && rule->self_attr) {
                uint64_t inner = 0;
                py_attr(t, self, rule->self_attr, &inner);
                self = inner;
            }
            if (!self) {
                kind = AIO_KIND_NONE; /* not the shape we know: say what is awaited */
            }
        }
    }
    aio_objkind ok = aio_object_kind(c, awaited);
    bool is_task = ok == AIO_OBJ_C_TASK || ok == AIO_OBJ_PY_TASK;
    bool is_future = ok == AIO_OBJ_C_FUTURE || ok == AIO_OBJ_PY_FUTURE;
    uint64_t id = awaited;
    if (kind != AIO_KIND_NONE && !aio_rule_keys_future(kind) && self) {
        id = self;
    } else if (kind == AIO_KIND_NONE) {
        if (is_task) {
            kind = AIO_KIND_TASK;
        } else if (is_future && aio_type_named(c, awaited, "_GatheringFuture")) {
            kind = AIO_KIND_GATHER;
        } else if (is_future && aio_callback_named(c, awaited, "_outer_done_callback")) {
            kind = AIO_KIND_SHIELD;
        } else if (is_future && aio_callback_named(c, awaited, "_call_check_cancel")) {
            kind = AIO_KIND_EXECUTOR;
        } else if (is_future && wait_frame) {
            kind = AIO_KIND_WAIT;
        } else if (is_future) {
            kind = in_wait_for ? AIO_KIND_TIMEOUT : AIO_KIND_FUTURE;
        } else {
            kind = AIO_KIND_OTHER;
        }
    }
    task->waits_kind = kind;
    task->waits_on = id;
    uint64_t type;
    if (py_type_of(t, id, &type) == ERR_OK) {
        char tname[AIO_TYPE_NAME_MAX];
        const char *plain = aio_type_name(c, type);
        if (!plain) {
            return ERR_NOMEM;
        }
        snprintf(tname, sizeof tname, "%s", plain);
        aio_fw_type_name(c, id, type, tname, sizeof tname);
        if (!(task->waits_type = aio_intern(c->model, tname))) {
            return ERR_NOMEM;
        }
    }
    if (!u64vec_add_unique(&task->awaits, id)) {
        return ERR_NOMEM;
    }
    if (kind == AIO_KIND_TASK) {
        return ERR_OK;
    }
    aio_resource *r = aio_resource_get(c, id, kind);
    /* Each task is read once, so a plain append keeps waiters unique (a
     * search would make 100,000 waiters on one Event quadratic). */
    uint64_t *w = r ? vec_push(&r->waiters) : NULL;
    if (!w) {
        return ERR_NOMEM;
    }
    *w = task->id;
    if (!r->future && (is_future || is_task)) {
        r->future = awaited;
    }
    if (r->members.len == 0 &&
        (kind == AIO_KIND_GATHER || kind == AIO_KIND_TASKGROUP || kind == AIO_KIND_SHIELD)) {
        return aio_members(c, r);
    }
    if (kind == AIO_KIND_WAIT && r->waiters.len == 1) {
        return aio_wait_members(c, r, wait_frame);
    }
    if (kind == AIO_KIND_TIMEOUT || in_wait_for) {
        /* wait_for's inner task, when it is one: the frame's local `fut`. */
        for (size_t i = 0; i < task->frames.len; i++) {
            const aio_frame *f = VEC_AT(&task->frames, aio_frame, i);
            uint64_t inner;
            if (aio_frame_function(f) && strcmp(aio_frame_function(f), "wait_for") == 0 &&
                py_frame_slot(t, f->addr, 0, &inner) == ERR_OK && aio_is_task(c, inner)) {
                return u64vec_add_unique(&r->members, inner) ? ERR_OK : ERR_NOMEM;
            }
        }
    }
    return ERR_OK;
}

err_t aio_walk_chain(aio_ctx *c, aio_task *task, uint64_t fut_waiter);
err_t aio_walk_chain(aio_ctx *c, aio_task *task, uint64_t fut_waiter) {
    py_target *t = c->t;
    uint64_t obj = task->coro, end = 0;
    err_t e = ERR_OK;
    for (int depth = 0; obj && obj != t->types.none; depth++) {
        if (depth == AIO_CHAIN_MAX) {
            task->truncated = true;
            break;
        }
        uint64_t type;
        if (py_type_of(t, obj, &type) != ERR_OK) {
            task->truncated = true;
            break;
        }
        if (type == t->types.coro || type == t->types.gen || type == t->types.asyncgen) {
            py_gen g;
            py_frame f;
            if (py_gen_read(t, obj, &g) != ERR_OK) {
                task->truncated = true;
                break;
            }
            if (g.state == PY_GEN_FINISHED) {
                break;
            }
            /* The reachability passes must not enter a blocked task's own
             * coroutines: they run only when the task runs. */
            if (c->opt->reachability && !u64vec_push(&c->model->chains, obj)) {
                return ERR_NOMEM;
            }
            bool readable = py_frame_read(t, g.frame, &f) == ERR_OK;
            if ((e = aio_push_chain_frame(c, task, g.frame, readable ? &f : NULL)) != ERR_OK) {
                return e;
            }
            if (g.state == PY_GEN_AWAITING) {
                obj = g.awaited;
                continue;
            }
            if (g.state == PY_GEN_SUSPENDED && readable && f.qualname &&
                strcmp(f.qualname, "Future.__await__") == 0) {
                /* The pure-Python Future yields itself: it is `self`. */
                py_frame_slot(t, g.frame, 0, &end);
            }
            break;
        }
        const char *name = aio_type_name(c, type);
        if (!name) {
            return ERR_NOMEM;
        }
        if (strcmp(name, "_asyncio.FutureIter") == 0 || strcmp(name, "FutureIter") == 0) {
            mem_read_u64(t->m, obj + AIO_WRAPPED_OFF, &end);
            break;
        }
        if (strcmp(name, "async_generator_asend") == 0 ||
            strcmp(name, "async_generator_athrow") == 0 || strcmp(name, "coroutine_wrapper") == 0) {
            if (mem_read_u64(t->m, obj + AIO_WRAPPED_OFF, &obj) != ERR_OK) {
                task->truncated = true;
                break;
            }
            continue;
        }
        end = obj; /* an awaitable of another kind: shown by its type */
        break;
    }
    /* Walked from the task's coroutine inwards; stacks read innermost first. */
    for (size_t i = 0, j = task->frames.len; i + 1 < j; i++, j--) {
        aio_frame tmp = *VEC_AT(&task->frames, aio_frame, i);
        *VEC_AT(&task->frames, aio_frame, i) = *VEC_AT(&task->frames, aio_frame, j - 1);
        *VEC_AT(&task->frames, aio_frame, j - 1) = tmp;
    }
    return aio_classify(c, task, fut_waiter ? fut_waiter : end);
}
