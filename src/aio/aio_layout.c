/* The C Future/Task layouts per version (not exported by any header: read
 * from Modules/_asynciomodule.c of each era and verified against live
 * objects), checked against the target's own .AsyncioDebug table on 3.14+,
 * and telling tasks and futures apart by type. */
#include "aio_int.h"

#include <string.h>

static const aio_layout aio_layout_311 = {
    .fut_loop = 16, .fut_callback0 = 24, .fut_callbacks = 40, .fut_exception = 48,
    .fut_result = 64, .fut_source_tb = 72, .fut_cancel_msg = 80, .fut_cancelled_exc = 120,
    .fut_dict = 104, .task_context = 152, .fut_state = 88, .fut_awaited_by = PY_NONE,
    .fut_awaited_by_is_set = PY_NONE, .task_fut_waiter = 128, .task_coro = 136, .task_name = 144,
    .task_num_cancels = 168, .task_node = PY_NONE, .task_size = 176,
    .ts_running_loop = PY_NONE, .ts_running_task = PY_NONE, .ts_tasks_head = PY_NONE,
    .is_tasks_head = PY_NONE, .mod_state = 32, .st_non_asyncio_tasks = PY_NONE,
    .st_non_asyncio_eager_tasks = PY_NONE,
};

static const aio_layout aio_layout_313 = {
    .fut_loop = 16, .fut_callback0 = 24, .fut_callbacks = 40, .fut_exception = 48,
    .fut_result = 64, .fut_source_tb = 72, .fut_cancel_msg = 80, .fut_cancelled_exc = 88,
    .fut_dict = PY_NONE, .task_context = 136, .fut_state = 96, .fut_awaited_by = PY_NONE,
    .fut_awaited_by_is_set = PY_NONE, .task_fut_waiter = 112, .task_coro = 120, .task_name = 128,
    .task_num_cancels = 104, .task_node = PY_NONE, .task_size = 144,
    /* _PyThreadStateImpl puts the running loop right after PyThreadState,
     * whose size the debug offsets give (304 in 3.13.0, 312 in 3.13.18). */
    .ts_running_loop = PY_NONE, .ts_running_task = PY_NONE, .ts_tasks_head = PY_NONE,
    .is_tasks_head = PY_NONE, .mod_state = 32, .st_non_asyncio_tasks = PY_NONE,
    .st_non_asyncio_eager_tasks = PY_NONE,
};

static const aio_layout aio_layout_314 = {
    .fut_loop = 16, .fut_callback0 = 24, .fut_callbacks = 40, .fut_exception = 48,
    .fut_result = 64, .fut_source_tb = 72, .fut_cancel_msg = 80, .fut_cancelled_exc = 88,
    .fut_dict = PY_NONE, .task_context = 144, .fut_state = 104, .fut_awaited_by = 96,
    .fut_awaited_by_is_set = 109, .task_fut_waiter = 120, .task_coro = 128, .task_name = 136,
    .task_num_cancels = 112, .task_node = 152, .task_size = 168,
    .ts_running_loop = 864, .ts_running_task = 872, .ts_tasks_head = 880,
    .is_tasks_head = 10880, .mod_state = 32, .st_non_asyncio_tasks = 6 * 8,
    .st_non_asyncio_eager_tasks = 7 * 8,
};

/* .AsyncioDebug: 13 uint64 (Modules/_asynciomodule.c, 3.14+). */
enum {
    AD_TASK_SIZE,
    AD_TASK_NAME,
    AD_TASK_AWAITED_BY,
    AD_TASK_IS_TASK,
    AD_TASK_AWAITED_BY_IS_SET,
    AD_TASK_CORO,
    AD_TASK_NODE,
    AD_INTERP_SIZE,
    AD_INTERP_TASKS_HEAD,
    AD_TSTATE_SIZE,
    AD_TSTATE_RUNNING_LOOP,
    AD_TSTATE_RUNNING_TASK,
    AD_TSTATE_TASKS_HEAD,
    AD_COUNT,
};
/* Sizes beyond these are damage, not layouts. */
#define AIO_TASK_SIZE_MAX 1024
#define AIO_STATE_SIZE_MAX (1u << 20)

static err_t aio_layout_from_section(aio_ctx *c) {
    py_target *t = c->t;
    sym_hit h;
    if (!sym_section(t->sym, NULL, ".AsyncioDebug", &h)) {
        return ERR_NOT_FOUND; /* _asyncio not loaded (yet) */
    }
    uint64_t v[AD_COUNT];
    if (h.size < sizeof v || mem_read(t->m, h.addr, sizeof v, v) != ERR_OK) {
        return err_set(t->err, ERR_CORRUPT, "the .AsyncioDebug table at 0x%llx is unreadable",
                       (unsigned long long)h.addr);
    }
    uint64_t task_size = v[AD_TASK_SIZE], ts_size = v[AD_TSTATE_SIZE], is_size = v[AD_INTERP_SIZE];
    bool ok = task_size >= 64 && task_size <= AIO_TASK_SIZE_MAX && ts_size >= 64 &&
              ts_size <= AIO_STATE_SIZE_MAX && is_size >= 64 && is_size <= AIO_STATE_SIZE_MAX;
    for (int i = AD_TASK_NAME; ok && i <= AD_TASK_NODE; i++) {
        ok = v[i] + 8 <= task_size;
    }
    ok = ok && v[AD_INTERP_TASKS_HEAD] + 16 <= is_size;
    for (int i = AD_TSTATE_RUNNING_LOOP; ok && i <= AD_TSTATE_TASKS_HEAD; i++) {
        ok = v[i] + 8 <= ts_size;
    }
    if (!ok) {
        return err_set(t->err, ERR_CORRUPT, "the .AsyncioDebug table at 0x%llx is inconsistent",
                       (unsigned long long)h.addr);
    }
    aio_layout *A = &c->A;
    A->task_size = (uint32_t)task_size;
    A->task_name = (int32_t)v[AD_TASK_NAME];
    A->fut_awaited_by = (int32_t)v[AD_TASK_AWAITED_BY];
    A->fut_awaited_by_is_set = (int32_t)v[AD_TASK_AWAITED_BY_IS_SET];
    A->task_coro = (int32_t)v[AD_TASK_CORO];
    A->task_node = (int32_t)v[AD_TASK_NODE];
    A->is_tasks_head = (int32_t)v[AD_INTERP_TASKS_HEAD];
    A->ts_running_loop = (int32_t)v[AD_TSTATE_RUNNING_LOOP];
    A->ts_running_task = (int32_t)v[AD_TSTATE_RUNNING_TASK];
    A->ts_tasks_head = (int32_t)v[AD_TSTATE_TASKS_HEAD];
    return ERR_OK;
}

err_t aio_layout_init(aio_ctx *c) {
    int minor = c->t->L.minor;
    c->A = minor <= 12 ? aio_layout_311 : minor == 13 ? aio_layout_313 : aio_layout_314;
    c->A.running_loop_holder = minor == 11;
    if (minor == 13) {
        c->A.ts_running_loop = (int32_t)c->t->L.ts_size;
    }
    if (minor == 15) {
        c->A.mod_state = 24; /* md_def removed */
    }
    if (minor >= 14) {
        err_t e = aio_layout_from_section(c);
        if (e != ERR_OK && e != ERR_NOT_FOUND) {
            return e;
        }
    }
    return ERR_OK;
}

static int aio_cached(u64set *s, uint64_t type) {
    return u64set_has(s, type);
}

aio_objkind aio_object_kind(aio_ctx *c, uint64_t obj) {
    py_target *t = c->t;
    uint64_t type;
    if (!obj || py_type_of(t, obj, &type) != ERR_OK || !type) {
        return AIO_OBJ_OTHER;
    }
    if (aio_cached(&c->c_task_types, type)) {
        return AIO_OBJ_C_TASK;
    }
    if (aio_cached(&c->c_future_types, type)) {
        return AIO_OBJ_C_FUTURE;
    }
    if (aio_cached(&c->py_task_types, type)) {
        return AIO_OBJ_PY_TASK;
    }
    if (aio_cached(&c->py_future_types, type)) {
        return AIO_OBJ_PY_FUTURE;
    }
    if (aio_cached(&c->other_types, type)) {
        return AIO_OBJ_OTHER;
    }
    aio_objkind k = AIO_OBJ_OTHER;
    if (py_type_is(t, type, "_asyncio.Task")) {
        k = AIO_OBJ_C_TASK;
    } else if (py_type_is(t, type, "_asyncio.Future")) {
        k = AIO_OBJ_C_FUTURE;
    } else {
        /* The pure-Python classes are heap types named Task and Future with
         * their state in instance attributes. */
        uint64_t v;
        bool has_callbacks = py_attr(t, obj, "_callbacks", &v) == ERR_OK && v;
        bool has_loop = py_attr(t, obj, "_loop", &v) == ERR_OK && v;
        if (has_callbacks && has_loop) {
            bool has_coro = py_attr(t, obj, "_coro", &v) == ERR_OK && v;
            k = has_coro && py_type_is(t, type, "Task") ? AIO_OBJ_PY_TASK
                : py_type_is(t, type, "Future")         ? AIO_OBJ_PY_FUTURE
                                                        : AIO_OBJ_OTHER;
        }
    }
    u64set *s = k == AIO_OBJ_C_TASK      ? &c->c_task_types
                : k == AIO_OBJ_C_FUTURE  ? &c->c_future_types
                : k == AIO_OBJ_PY_TASK   ? &c->py_task_types
                : k == AIO_OBJ_PY_FUTURE ? &c->py_future_types
                                         : &c->other_types;
    /* Pure-Python futures are recognised by their attributes, so a type is
     * cached as "other" only once an instance proved it is one. */
    if (k != AIO_OBJ_OTHER || !py_type_is(t, type, "Future")) {
        u64set_add(s, type);
    }
    return k;
}

bool aio_is_task(aio_ctx *c, uint64_t obj) {
    aio_objkind k = aio_object_kind(c, obj);
    return k == AIO_OBJ_C_TASK || k == AIO_OBJ_PY_TASK;
}
