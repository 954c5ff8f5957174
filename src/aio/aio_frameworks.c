/* The frameworks people run on asyncio, modelled like asyncio's own
 * primitives so that the same diagnoses see through them:
 *  - anyio on the asyncio backend: its Lock records its owner task, its
 *    CapacityLimiter its borrowers, its Semaphore only a count (holders come
 *    from `async with`, as for asyncio's); its memory object streams share
 *    one state whose open ends decide who could still wake a waiter.
 *  - httpcore's connection pool (what httpx sends through): a request
 *    waiting for a connection waits on the pool, held by the tasks whose
 *    frames keep an active response stream of it open.
 *  - the request a task serves: an ASGI scope (uvicorn, Starlette, FastAPI)
 *    or an aiohttp request in its outermost frames.
 * Types are told apart by their names and the fields they carry, never by
 * version numbers; a field that is not where it should be leaves the
 * resource as the plain kind it was typed as. */
#include "aio_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Outermost frames of a task searched for the request it serves: servers
 * call the application from the task's first frames (uvicorn's run_asgi,
 * the middleware stack, aiohttp's _handle_request), and a bound keeps a
 * million tasks cheap. */
#define AIO_REQUEST_FRAMES 8
/* Attribute hops from a frame's local to an httpcore pool request (httpx
 * Response -> BoundAsyncStream -> AsyncResponseStream -> PoolByteStream ->
 * AsyncPoolRequest): one more than the longest chain. */
#define AIO_POOL_HOPS 6
/* Borrowers of one CapacityLimiter and requests of one pool we look at. */
#define AIO_FW_ITEMS_MAX 4096
/* Locals of one frame searched for a pool's response stream. */
#define AIO_FW_LOCALS_MAX 256

typedef enum aio_fw {
    AIO_FW_NONE,
    AIO_FW_ANYIO_LOCK,
    AIO_FW_ANYIO_SEMAPHORE,
    AIO_FW_ANYIO_LIMITER,
    AIO_FW_ANYIO_EVENT,
    AIO_FW_ANYIO_CONDITION,
    AIO_FW_ANYIO_TASKGROUP,
    AIO_FW_ANYIO_STREAM,
    AIO_FW_HTTPCORE_POOL,
    AIO_FW_COUNT,
} aio_fw;

typedef struct aio_fw_kind {
    const char *tp_name; /* the type's own name */
    const char *field;   /* a slot (or, for slot-less classes, attribute) only it has */
    bool slot;           /* field is a __slots__ member, not a __dict__ entry */
    const char *name;    /* what snarl calls it */
} aio_fw_kind;

static const aio_fw_kind aio_fw_kinds[AIO_FW_COUNT] = {
    [AIO_FW_ANYIO_LOCK] = {"Lock", "_owner_task", true, "anyio.Lock"},
    [AIO_FW_ANYIO_SEMAPHORE] = {"Semaphore", "_fast_acquire", true, "anyio.Semaphore"},
    [AIO_FW_ANYIO_LIMITER] = {"CapacityLimiter", "_borrowers", true, "anyio.CapacityLimiter"},
    [AIO_FW_ANYIO_EVENT] = {"Event", "_event", true, "anyio.Event"},
    [AIO_FW_ANYIO_CONDITION] = {"Condition", "_owner_task", true, "anyio.Condition"},
    [AIO_FW_ANYIO_TASKGROUP] = {"TaskGroup", "cancel_scope", false, "anyio.TaskGroup"},
    [AIO_FW_ANYIO_STREAM] = {"_MemoryObjectStreamState", "open_send_channels", false,
                             "anyio.MemoryObjectStream"},
    [AIO_FW_HTTPCORE_POOL] = {"AsyncConnectionPool", "_requests", false,
                              "httpcore.AsyncConnectionPool"},
};

/* The framework kind of obj (of type `type`), cached per type. */
static aio_fw aio_fw_of(aio_ctx *c, uint64_t obj, uint64_t type) {
    uint64_t v;
    if (u64map_get(&c->fw_types, type, &v)) {
        return (aio_fw)v;
    }
    char name[64];
    aio_fw found = AIO_FW_NONE;
    if (py_type_name(c->t, type, name, sizeof name) == ERR_OK) {
        for (int k = 1; k < AIO_FW_COUNT && found == AIO_FW_NONE; k++) {
            const aio_fw_kind *fk = &aio_fw_kinds[k];
            uint64_t field = 0;
            if (strcmp(name, fk->tp_name) != 0) {
                continue;
            }
            if (fk->slot) {
                py_slot(c->t, obj, fk->field, &field);
            } else {
                py_attr(c->t, obj, fk->field, &field);
            }
            found = field ? (aio_fw)k : AIO_FW_NONE;
        }
    }
    u64map_put(&c->fw_types, type, (uint64_t)found);
    return found;
}

static aio_fw aio_fw_of_res(const aio_resource *r) {
    for (int k = 1; k < AIO_FW_COUNT; k++) {
        if (strcmp(r->type, aio_fw_kinds[k].name) == 0) {
            return (aio_fw)k;
        }
    }
    return AIO_FW_NONE;
}

void aio_fw_type_name(aio_ctx *c, uint64_t obj, uint64_t type, char *buf, size_t cap) {
    aio_fw k = aio_fw_of(c, obj, type);
    if (k != AIO_FW_NONE) {
        snprintf(buf, cap, "%s", aio_fw_kinds[k].name);
    }
}

/* A field of a framework object: anyio's backend classes keep theirs in
 * __slots__, its dataclasses and httpcore in __dict__. */
static uint64_t aio_fw_field(aio_ctx *c, uint64_t obj, const char *name) {
    uint64_t v = 0;
    if (py_slot(c->t, obj, name, &v) != ERR_OK || !v) {
        v = 0;
        py_attr(c->t, obj, name, &v);
    }
    return v;
}

static bool aio_fw_int(aio_ctx *c, uint64_t obj, const char *name, int64_t *out) {
    uint64_t v = aio_fw_field(c, obj, name);
    double d;
    if (v && py_read_long(c->t, v, out) == ERR_OK) {
        return true;
    }
    if (v && py_read_float(c->t, v, &d) == ERR_OK) { /* math.inf: no limit */
        *out = d > 1e18 ? INT64_MAX : (int64_t)d;
        return true;
    }
    return false;
}

static size_t aio_fw_len(aio_ctx *c, uint64_t obj) {
    uint64_t n = 0;
    if (!obj || mem_read_u64(c->t->m, obj + (uint64_t)c->t->L.ob_size, &n) != ERR_OK) {
        return 0;
    }
    return (size_t)n;
}

static bool aio_fw_is_none(aio_ctx *c, uint64_t v) {
    return !v || v == c->t->types.none;
}

static const aio_task *aio_fw_task(aio_ctx *c, uint64_t id) {
    uint64_t idx;
    return u64map_get(&c->task_index, id, &idx) ? VEC_AT(&c->model->tasks, aio_task, idx) : NULL;
}

static bool aio_fw_library_file(const char *file) {
    return file && (strstr(file, "/asyncio/") || strstr(file, "/anyio/") ||
                    strstr(file, "/httpcore/") || strstr(file, "/httpx/"));
}

/* Where a holder is suspended: its innermost frame outside the libraries. */
static aio_site aio_fw_site(const aio_task *t) {
    aio_site s = {NULL, NULL, -1};
    for (size_t i = 0; i < t->frames.len; i++) {
        const aio_frame *f = VEC_AT(&t->frames, aio_frame, i);
        if (aio_frame_function(f) && !aio_fw_library_file(aio_frame_file(f))) {
            s.function = aio_frame_function(f);
            s.file = aio_frame_file(f);
            s.line = f->line;
            return s;
        }
    }
    return s;
}

static err_t aio_fw_add_holder(aio_resource *r, const aio_task *t, aio_site site) {
    if (u64vec_has(&r->holders, t->id)) {
        return ERR_OK;
    }
    aio_site *s = u64vec_push(&r->holders, t->id) ? vec_push(&r->holder_sites) : NULL;
    if (!s) {
        return ERR_NOMEM;
    }
    *s = site;
    return ERR_OK;
}

bool aio_fw_locked(aio_ctx *c, const aio_resource *r, bool *locked) {
    int64_t n, max;
    switch (aio_fw_of_res(r)) {
    case AIO_FW_ANYIO_LOCK:
        *locked = !aio_fw_is_none(c, aio_fw_field(c, r->id, "_owner_task"));
        return true;
    case AIO_FW_ANYIO_SEMAPHORE:
        *locked = aio_fw_int(c, r->id, "_value", &n) && n <= 0;
        return true;
    case AIO_FW_ANYIO_LIMITER:
        *locked = aio_fw_int(c, r->id, "_total_tokens", &max) &&
                  (int64_t)aio_fw_len(c, aio_fw_field(c, r->id, "_borrowers")) >= max;
        return true;
    case AIO_FW_HTTPCORE_POOL:
        *locked = true; /* decided with its requests in aio_fw_pool */
        return true;
    default:
        return false;
    }
}

/* anyio's Lock: its owner task. */
static err_t aio_fw_lock(aio_ctx *c, aio_resource *r) {
    uint64_t owner = aio_fw_field(c, r->id, "_owner_task");
    const aio_task *t = aio_fw_is_none(c, owner) ? NULL : aio_fw_task(c, owner);
    r->holders.len = r->holder_sites.len = 0;
    r->possible_holders.len = 0;
    snprintf(r->detail, sizeof r->detail, "%s, %zu waiting", t ? "locked" : "unlocked",
             aio_fw_len(c, aio_fw_field(c, r->id, "_waiters")));
    return t ? aio_fw_add_holder(r, t, aio_fw_site(t)) : ERR_OK;
}

/* anyio's CapacityLimiter: its borrowers (tasks, or any object a caller
 * borrowed on behalf of). Only when every borrower is a known task are they
 * the holders; otherwise they are only possible ones. */
static err_t aio_fw_limiter(aio_ctx *c, aio_resource *r) {
    vec items;
    vec_init(&items, sizeof(uint64_t));
    uint64_t set = aio_fw_field(c, r->id, "_borrowers");
    int64_t total = 0;
    err_t e = ERR_OK;
    bool all_tasks =
        set && py_set_items(c->t, set, &items) == ERR_OK && items.len <= AIO_FW_ITEMS_MAX;
    for (size_t i = 0; i < items.len && i < AIO_FW_ITEMS_MAX; i++) {
        all_tasks &= aio_fw_task(c, *VEC_AT(&items, uint64_t, i)) != NULL;
    }
    r->holders.len = r->holder_sites.len = 0;
    for (size_t i = 0; i < items.len && i < AIO_FW_ITEMS_MAX && e == ERR_OK; i++) {
        const aio_task *t = aio_fw_task(c, *VEC_AT(&items, uint64_t, i));
        if (t && all_tasks) {
            e = aio_fw_add_holder(r, t, aio_fw_site(t));
        } else if (t && !u64vec_add_unique(&r->possible_holders, t->id)) {
            e = ERR_NOMEM;
        }
    }
    aio_fw_int(c, r->id, "_total_tokens", &total);
    snprintf(r->detail, sizeof r->detail, "%zu of %" PRId64 " tokens borrowed", (size_t)items.len,
             total);
    vec_free(&items);
    return e;
}

/* --- httpcore's pool ------------------------------------------------ */

/* The pool request an object leads to, through httpx's and httpcore's
 * response wrappers; 0 if none. types caches each type's step (0: none,
 * 1..4: a hop, 5: the pool request): every local of every pending task is
 * asked, and a million tasks share a few types. */
static uint64_t aio_fw_pool_request(aio_ctx *c, u64map *types, uint64_t obj) {
    static const struct {
        const char *type, *next;
    } hops[] = {
        {"Response", "stream"},                      /* httpx.Response, httpcore.Response */
        {"BoundAsyncStream", "_stream"},             /* httpx's client */
        {"AsyncResponseStream", "_httpcore_stream"}, /* httpx's transport */
        {"PoolByteStream", "_pool_request"},         /* httpcore's pool */
    };
    const uint64_t found = ARRAY_LEN(hops) + 1;
    for (int hop = 0; obj && hop < AIO_POOL_HOPS; hop++) {
        uint64_t type, step = 0;
        char name[64];
        if (py_type_of(c->t, obj, &type) != ERR_OK) {
            return 0;
        }
        if (!u64map_get(types, type, &step)) {
            if (py_type_name(c->t, type, name, sizeof name) != ERR_OK) {
                return 0;
            }
            step = strcmp(name, "AsyncPoolRequest") == 0 ? found : 0;
            for (size_t k = 0; k < ARRAY_LEN(hops) && !step; k++) {
                step = strcmp(name, hops[k].type) == 0 ? k + 1 : 0;
            }
            u64map_put(types, type, step);
        }
        if (step == found) {
            return obj;
        }
        uint64_t next = 0;
        if (step) {
            py_attr(c->t, obj, hops[step - 1].next, &next);
        }
        obj = next;
    }
    return 0;
}

/* Frame of t running function, or NULL. */
static const aio_frame *aio_fw_frame(const aio_task *t, const char *function) {
    for (size_t i = 0; i < t->frames.len; i++) {
        const aio_frame *f = VEC_AT(&t->frames, aio_frame, i);
        if (aio_frame_function(f) && strcmp(aio_frame_function(f), function) == 0) {
            return f;
        }
    }
    return NULL;
}

static err_t aio_fw_pool(aio_ctx *c, aio_resource *r) {
    py_target *t = c->t;
    aio_model *m = c->model;
    vec reqs;
    vec_init(&reqs, sizeof(uint64_t));
    uint64_t list = aio_fw_field(c, r->id, "_requests");
    int64_t max = 0;
    aio_fw_int(c, r->id, "_max_connections", &max);
    r->holders.len = r->holder_sites.len = 0;
    r->possible_holders.len = 0;
    if (!list || py_list_items(t, list, &reqs) != ERR_OK || reqs.len > AIO_FW_ITEMS_MAX) {
        vec_free(&reqs);
        return ERR_OK;
    }
    /* Active requests hold a connection; queued ones wait for one. */
    u64map active; /* pool request -> 1 once a task is found holding it, else 0 */
    u64map_init(&active);
    u64map types;
    u64map_init(&types);
    size_t nactive = 0;
    err_t e = ERR_OK;
    for (size_t i = 0; i < reqs.len && e == ERR_OK; i++) {
        uint64_t pr = *VEC_AT(&reqs, uint64_t, i);
        if (!aio_fw_is_none(c, aio_fw_field(c, pr, "connection"))) {
            nactive++;
            e = u64map_put(&active, pr, 0) ? ERR_OK : ERR_NOMEM;
        }
    }
    /* A waiter whose request already got a connection is about to run;
     * one with a pool timeout gives up by itself: no holder edge for either. */
    bool settled = false, timeout = false;
    for (size_t i = 0; i < r->waiters.len; i++) {
        const aio_task *w = aio_fw_task(c, *VEC_AT(&r->waiters, uint64_t, i));
        const aio_frame *f = w ? aio_fw_frame(w, "AsyncPoolRequest.wait_for_connection") : NULL;
        uint64_t pr = 0, to = 0, v;
        if (f && py_frame_slot(t, f->addr, 0, &pr) == ERR_OK && pr && u64map_get(&active, pr, &v)) {
            settled = true;
        }
        if (f && py_frame_slot(t, f->addr, 1, &to) == ERR_OK && !aio_fw_is_none(c, to)) {
            timeout = true;
        }
    }
    /* Who keeps each active request's response open: the pending tasks
     * whose frames hold its response or stream. */
    size_t found = 0;
    for (size_t i = 0; i < m->tasks.len && e == ERR_OK && nactive && !settled; i++) {
        const aio_task *task = VEC_AT(&m->tasks, aio_task, i);
        if (task->state != AIO_STATE_PENDING) {
            continue;
        }
        for (size_t k = 0; k < task->frames.len && e == ERR_OK; k++) {
            const aio_frame *f = VEC_AT(&task->frames, aio_frame, k);
            if (!aio_frame_code(f) || aio_fw_library_file(aio_frame_file(f))) {
                continue;
            }
            for (int s = 0; s < aio_frame_nlocals(f) && s < AIO_FW_LOCALS_MAX && e == ERR_OK; s++) {
                uint64_t o, pr, v;
                if (py_frame_slot(t, f->addr, s, &o) != ERR_OK || !o ||
                    !(pr = aio_fw_pool_request(c, &types, o)) || !u64map_get(&active, pr, &v)) {
                    continue;
                }
                if (v == 0) {
                    found++;
                    u64map_put(&active, pr, 1);
                }
                aio_site site = {aio_frame_function(f), aio_frame_file(f), f->line};
                e = aio_fw_add_holder(r, task, site);
            }
        }
    }
    if (e == ERR_OK && (found < nactive || settled || timeout)) {
        /* Someone unseen keeps a connection, or the wait ends by itself:
         * the tasks found only may hold it. */
        for (size_t h = 0; h < r->holders.len && e == ERR_OK && found < nactive; h++) {
            e = u64vec_add_unique(&r->possible_holders, *VEC_AT(&r->holders, uint64_t, h))
                    ? ERR_OK
                    : ERR_NOMEM;
        }
        r->holders.len = r->holder_sites.len = 0;
    }
    snprintf(r->detail, sizeof r->detail, "%zu of %" PRId64 " connections in use, %zu queued%s",
             nactive, max, reqs.len - nactive, timeout ? ", with a pool timeout" : "");
    u64map_free(&active);
    u64map_free(&types);
    vec_free(&reqs);
    return e;
}

/* --- anyio's memory object streams ---------------------------------- */

void aio_fw_note_ref(aio_ctx *c, uint64_t obj, uint64_t task, bool owned) {
    if (!c->fw_streams || !obj) {
        return;
    }
    uint64_t type, v;
    char name[64];
    if (py_type_of(c->t, obj, &type) != ERR_OK) {
        return;
    }
    if (!u64map_get(&c->fw_stream_types, type, &v)) {
        v = 0;
        if (py_type_name(c->t, type, name, sizeof name) == ERR_OK) {
            v = strcmp(name, "MemoryObjectSendStream") == 0      ? 1
                : strcmp(name, "MemoryObjectReceiveStream") == 0 ? 2
                                                                 : 0;
        }
        u64map_put(&c->fw_stream_types, type, v);
    }
    if (!v) {
        return;
    }
    uint64_t state = 0, idx;
    py_attr(c->t, obj, "_state", &state);
    if (!state || !u64map_get(&c->resource_index, state, &idx)) {
        return;
    }
    aio_fw_ref *ref = vec_push(&c->fw_stream_refs);
    if (ref) {
        ref->stream = obj;
        ref->state = state;
        ref->task = task;
        ref->send = v == 1;
        ref->owned = owned;
    }
}

/* Who could wake a stream's waiters: the tasks holding an open end of the
 * other side. Its state is referenced from anywhere but the stream objects
 * found in frames (whose own references must all be those frames'): then
 * someone unseen may still send or receive. */
static err_t aio_fw_stream(aio_ctx *c, aio_resource *r) {
    py_target *t = c->t;
    bool want_send = false, want_receive = false;
    for (size_t i = 0; i < r->waiters.len; i++) {
        const aio_task *w = aio_fw_task(c, *VEC_AT(&r->waiters, uint64_t, i));
        want_send |= w && aio_fw_frame(w, "MemoryObjectReceiveStream.receive") != NULL;
        want_receive |= w && aio_fw_frame(w, "MemoryObjectSendStream.send") != NULL;
    }
    u64map frame_refs; /* stream -> owned references from frames */
    u64map_init(&frame_refs);
    vec streams;
    vec_init(&streams, sizeof(uint64_t));
    u64set sends; /* the send streams among them */
    u64set_init(&sends);
    err_t e = ERR_OK;
    size_t send_objs = 0, receive_objs = 0;
    r->resolvers.len = 0;
    for (size_t i = 0; i < c->fw_stream_refs.len && e == ERR_OK; i++) {
        const aio_fw_ref *ref = VEC_AT(&c->fw_stream_refs, aio_fw_ref, i);
        uint64_t n = 0;
        if (ref->state != r->id) {
            continue;
        }
        if (!u64map_get(&frame_refs, ref->stream, &n)) {
            if (!u64vec_push(&streams, ref->stream)) {
                e = ERR_NOMEM;
                break;
            }
            send_objs += ref->send;
            receive_objs += !ref->send;
            if (ref->send && u64set_add(&sends, ref->stream) < 0) {
                e = ERR_NOMEM;
                break;
            }
        }
        if (!u64map_put(&frame_refs, ref->stream, n + ref->owned)) {
            e = ERR_NOMEM;
        }
        /* `_closed` is a dataclass default: in the instance only once
         * close() set it. Absent (or unreadable) counts as open, which
         * only ever adds a resolver. */
        bool open = aio_fw_field(c, ref->stream, "_closed") != t->types.true_;
        if (open && ((ref->send && want_send) || (!ref->send && want_receive)) &&
            !u64vec_has(&r->waiters, ref->task) && !u64vec_add_unique(&r->resolvers, ref->task)) {
            e = ERR_NOMEM;
        }
    }
    uint64_t count;
    bool immortal, external = py_refcount(t, r->id, &count, &immortal) != ERR_OK || immortal ||
                              count > streams.len;
    /* Only the ends that could wake the waiters matter: whoever else holds
     * a receive stream can only receive (a receiver in receive() keeps one
     * more in its WouldBlock's traceback), and an unseen stream object of
     * either side shows in the state's count. */
    for (size_t i = 0; i < streams.len && !external; i++) {
        uint64_t s = *VEC_AT(&streams, uint64_t, i), n = 0;
        bool send = u64set_has(&sends, s);
        if (!((send && want_send) || (!send && want_receive))) {
            continue;
        }
        u64map_get(&frame_refs, s, &n);
        external = py_refcount(t, s, &count, &immortal) != ERR_OK || immortal || count > n;
    }
    r->external_refs = external;
    int64_t senders = -1, receivers = -1, size = 0;
    aio_fw_int(c, r->id, "open_send_channels", &senders);
    aio_fw_int(c, r->id, "open_receive_channels", &receivers);
    aio_fw_int(c, r->id, "max_buffer_size", &size);
    size_t used = aio_fw_len(c, aio_fw_field(c, r->id, "buffer"));
    /* Every reference explained and no send stream among them: the open
     * send ends were dropped without close(), nobody can ever send. */
    const char *gone = !external && want_send && send_objs == 0 && senders > 0
                           ? " (no send stream object left)"
                       : !external && want_receive && receive_objs == 0 && receivers > 0
                           ? " (no receive stream object left)"
                           : "";
    char cap[24];
    if (size == INT64_MAX) {
        snprintf(cap, sizeof cap, "inf");
    } else {
        snprintf(cap, sizeof cap, "%" PRId64, size);
    }
    snprintf(r->detail, sizeof r->detail,
             "%zu of %s buffered, %" PRId64 " open send, %" PRId64 " open receive ends%s", used,
             cap, senders, receivers, gone);
    u64map_free(&frame_refs);
    vec_free(&streams);
    u64set_free(&sends);
    return e;
}

err_t aio_fw_holders(aio_ctx *c) {
    aio_model *m = c->model;
    err_t e = ERR_OK;
    for (size_t i = 0; i < m->resources.len && e == ERR_OK; i++) {
        aio_resource *r = VEC_AT(&m->resources, aio_resource, i);
        switch (aio_fw_of_res(r)) {
        case AIO_FW_ANYIO_LOCK:
            e = aio_fw_lock(c, r);
            break;
        case AIO_FW_ANYIO_LIMITER:
            e = aio_fw_limiter(c, r);
            break;
        case AIO_FW_HTTPCORE_POOL:
            e = aio_fw_pool(c, r);
            break;
        default:
            break;
        }
    }
    return e;
}

err_t aio_fw_resolvers(aio_ctx *c) {
    aio_model *m = c->model;
    err_t e = ERR_OK;
    for (size_t i = 0; i < m->resources.len && e == ERR_OK; i++) {
        aio_resource *r = VEC_AT(&m->resources, aio_resource, i);
        if (aio_fw_of_res(r) == AIO_FW_ANYIO_STREAM) {
            e = aio_fw_stream(c, r);
        }
    }
    return e;
}

void aio_fw_resource_added(aio_ctx *c, const aio_resource *r) {
    c->fw_streams |= aio_fw_of_res(r) == AIO_FW_ANYIO_STREAM;
}

/* --- the request a task serves -------------------------------------- */

/* Per code object: which local holds a request. */
enum { AIO_REQ_NONE = 0, AIO_REQ_SCOPE = 1, AIO_REQ_AIOHTTP = 2 };

static uint64_t aio_fw_request_slot(aio_ctx *c, uint64_t code) {
    uint64_t v;
    if (u64map_get(&c->fw_req_codes, code, &v)) {
        return v;
    }
    vec names;
    vec_init(&names, sizeof(uint64_t));
    v = 0;
    if (py_code_local_names(c->t, code, &names) == ERR_OK) {
        for (size_t k = 0; k < names.len && k < AIO_FW_LOCALS_MAX && !v; k++) {
            char name[16];
            if (py_read_str_buf(c->t, *VEC_AT(&names, uint64_t, k), name, sizeof name) != ERR_OK) {
                continue;
            }
            if (strcmp(name, "scope") == 0) {
                v = (uint64_t)k << 2 | AIO_REQ_SCOPE;
            } else if (strcmp(name, "request") == 0) {
                v = (uint64_t)k << 2 | AIO_REQ_AIOHTTP;
            }
        }
    }
    vec_free(&names);
    u64map_put(&c->fw_req_codes, code, v);
    return v;
}

static void aio_fw_str(aio_ctx *c, uint64_t obj, char *buf, size_t cap) {
    uint64_t type;
    buf[0] = '\0';
    if (obj && py_type_of(c->t, obj, &type) == ERR_OK && type == c->t->types.str &&
        py_read_str_buf(c->t, obj, buf, cap) != ERR_OK) {
        buf[0] = '\0';
    }
}

/* "host:port" from a (host, port) tuple or list. */
static void aio_fw_peer(aio_ctx *c, uint64_t obj, char *buf, size_t cap) {
    vec items;
    vec_init(&items, sizeof(uint64_t));
    uint64_t type;
    int64_t port;
    char host[64];
    buf[0] = '\0';
    if (obj && py_type_of(c->t, obj, &type) == ERR_OK &&
        (type == c->t->types.tuple  ? py_tuple_items(c->t, obj, &items)
         : type == c->t->types.list ? py_list_items(c->t, obj, &items)
                                    : ERR_CORRUPT) == ERR_OK &&
        items.len >= 2) {
        aio_fw_str(c, *VEC_AT(&items, uint64_t, 0), host, sizeof host);
        if (host[0] && py_read_long(c->t, *VEC_AT(&items, uint64_t, 1), &port) == ERR_OK) {
            snprintf(buf, cap, strchr(host, ':') ? "[%s]:%" PRId64 : "%s:%" PRId64, host, port);
        }
    }
    vec_free(&items);
}

static bool aio_fw_read_request(aio_ctx *c, uint64_t obj, uint64_t how, aio_request *out) {
    py_target *t = c->t;
    uint64_t type, v = 0;
    memset(out, 0, sizeof *out);
    if (py_type_of(t, obj, &type) != ERR_OK) {
        return false;
    }
    if ((how & 3) == AIO_REQ_SCOPE) {
        char kind[16];
        if (type != t->types.dict || py_dict_get_str(t, obj, "type", &v) != ERR_OK) {
            return false;
        }
        aio_fw_str(c, v, kind, sizeof kind);
        if (strcmp(kind, "http") != 0 && strcmp(kind, "websocket") != 0) {
            return false;
        }
        v = 0;
        py_dict_get_str(t, obj, "method", &v);
        aio_fw_str(c, v, out->method, sizeof out->method);
        if (!out->method[0] && strcmp(kind, "websocket") == 0) {
            snprintf(out->method, sizeof out->method, "WEBSOCKET");
        }
        v = 0;
        py_dict_get_str(t, obj, "path", &v);
        aio_fw_str(c, v, out->path, sizeof out->path);
        v = 0;
        py_dict_get_str(t, obj, "client", &v);
        aio_fw_peer(c, v, out->client, sizeof out->client);
    } else {
        /* aiohttp.web_request.BaseRequest: its method, its relative URL's
         * path (yarl keeps it in a slot), the transport's peer. */
        uint64_t url = 0, path = 0;
        if (!py_type_is(t, type, "BaseRequest")) {
            return false;
        }
        py_attr(t, obj, "_method", &v);
        aio_fw_str(c, v, out->method, sizeof out->method);
        if (py_attr(t, obj, "_rel_url", &url) == ERR_OK && url) {
            py_slot(t, url, "_path", &path);
            aio_fw_str(c, path, out->path, sizeof out->path);
        }
        v = 0;
        py_attr(t, obj, "_transport_peername", &v);
        aio_fw_peer(c, v, out->client, sizeof out->client);
    }
    return out->method[0] || out->path[0];
}

err_t aio_fw_request(aio_ctx *c, aio_task *task) {
    py_target *t = c->t;
    size_t n = task->frames.len, from = n > AIO_REQUEST_FRAMES ? n - AIO_REQUEST_FRAMES : 0;
    for (size_t i = n; i-- > from;) { /* outermost first */
        const aio_frame *f = VEC_AT(&task->frames, aio_frame, i);
        uint64_t how, obj;
        aio_request req;
        if (!aio_frame_code(f) || !(how = aio_fw_request_slot(c, aio_frame_code(f))) ||
            py_frame_slot(t, f->addr, (int)(how >> 2), &obj) != ERR_OK || !obj ||
            !aio_fw_read_request(c, obj, how, &req)) {
            continue;
        }
        if (!(task->request = util_alloc(sizeof *task->request))) {
            return ERR_NOMEM;
        }
        *task->request = req;
        return ERR_OK;
    }
    return ERR_OK;
}
