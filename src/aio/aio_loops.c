/* Event loops and what runs on them: each task's loop, the loop each thread
 * runs and the task it is running (spliced into that thread's stack), the
 * deadlines of sleeping tasks from the loop's timer heap, and the edges that
 * make the wait-for graph: awaited-by for every task. */
#include "aio_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The key 3.11 and 3.12 use in a thread's dict for the running loop. */
#define AIO_RUNNING_LOOP_KEY "__asyncio_running_event_loop__"
/* 3.11 keeps a _RunningLoopHolder there: its loop follows the header. */
#define AIO_HOLDER_LOOP 16
/* Timer handles we index per loop. */
#define AIO_TIMERS_MAX (1u << 24)

static aio_loop *aio_loop_get(aio_ctx *c, uint64_t id) {
    aio_model *m = c->model;
    for (size_t i = 0; i < m->loops.len; i++) {
        aio_loop *l = VEC_AT(&m->loops, aio_loop, i);
        if (l->id == id) {
            return l;
        }
    }
    aio_loop *l = vec_push(&m->loops);
    if (l) {
        uint64_t type;
        l->id = id;
        if (py_type_of(c->t, id, &type) == ERR_OK) {
            py_type_name(c->t, type, l->type, sizeof l->type);
        }
    }
    return l;
}

/* The loop a thread runs, per version. */
static uint64_t aio_thread_loop(aio_ctx *c, const aio_thread *th) {
    py_target *t = c->t;
    uint64_t v = 0;
    if (c->A.ts_running_loop != PY_NONE) {
        mem_read_u64(t->m, th->tstate + (uint64_t)c->A.ts_running_loop, &v);
        return v == t->types.none ? 0 : v;
    }
    uint64_t dict;
    if (mem_read_u64(t->m, th->tstate + (uint64_t)t->L.ts_dict, &dict) != ERR_OK || !dict ||
        py_dict_get_str(t, dict, AIO_RUNNING_LOOP_KEY, &v) != ERR_OK || !v) {
        return 0;
    }
    if (c->A.running_loop_holder && mem_read_u64(t->m, v + AIO_HOLDER_LOOP, &v) != ERR_OK) {
        return 0;
    }
    return v == t->types.none ? 0 : v;
}

/* {loop: task} from asyncio.tasks._current_tasks (3.11-3.13). */
static uint64_t aio_current_task(aio_ctx *c, const aio_thread *th, uint64_t loop) {
    py_target *t = c->t;
    uint64_t v = 0;
    if (c->A.ts_running_task != PY_NONE) {
        mem_read_u64(t->m, th->tstate + (uint64_t)c->A.ts_running_task, &v);
        if (v && v != t->types.none) {
            return v;
        }
        /* 3.14+ pure-Python tasks still enter asyncio.tasks._current_tasks. */
        v = 0;
    }
    uint64_t mod, md, cur;
    if (py_module(t, c->interp, "asyncio.tasks", &mod) != ERR_OK || !mod ||
        mem_read_u64(t->m, mod + (uint64_t)t->L.mod_dict, &md) != ERR_OK ||
        py_dict_get_str(t, md, "_current_tasks", &cur) != ERR_OK || !cur) {
        return 0;
    }
    vec items;
    vec_init(&items, sizeof(uint64_t));
    if (py_dict_items(t, cur, &items) == ERR_OK) {
        for (size_t i = 0; i + 1 < items.len; i += 2) {
            if (*VEC_AT(&items, uint64_t, i) == loop) {
                v = *VEC_AT(&items, uint64_t, i + 1);
            }
        }
    }
    vec_free(&items);
    return v;
}

err_t aio_find_running_tasks(aio_ctx *c) {
    aio_model *m = c->model;
    c->model->tasks_found_by = "running tasks only";
    for (size_t i = 0; i < m->threads.len; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        uint64_t loop = aio_thread_loop(c, th), task;
        if (loop && (task = aio_current_task(c, th, loop)) && aio_is_task(c, task)) {
            err_t e = aio_read_task(c, task, "running");
            if (e != ERR_OK) {
                return e;
            }
        }
    }
    return ERR_OK;
}

/* A running task's coroutine frames are on its thread's stack, the inner
 * ones only there: its stack is the thread's frames from the innermost up to
 * the task's outermost coroutine frame; those thread frames are marked so
 * stacks can show where the task begins. */
static err_t aio_splice_running(aio_ctx *c, aio_thread *th, aio_task *task) {
    (void)c;
    task->running_thread = th->native_id;
    if (task->frames.len == 0) {
        return ERR_OK;
    }
    /* The chain reads innermost first; its last frame is the coroutine's. */
    uint64_t outer = VEC_AT(&task->frames, aio_frame, task->frames.len - 1)->addr;
    size_t k = th->frames.len;
    for (size_t i = 0; i < th->frames.len && k == th->frames.len; i++) {
        if (VEC_AT(&th->frames, aio_frame, i)->addr == outer) {
            k = i;
        }
    }
    if (k == th->frames.len) {
        return ERR_OK; /* not on this thread's stack after all */
    }
    vec frames;
    vec_init(&frames, sizeof(aio_frame));
    bool ok = true;
    for (size_t i = 0; i <= k && ok; i++) {
        aio_frame *src = VEC_AT(&th->frames, aio_frame, i), *dst = vec_push(&frames);
        ok = dst && aio_frame_set_task(src, task->id);
        if (ok) {
            dst->addr = src->addr;
            dst->line = src->line;
            dst->name = src->name; /* into the model's pool */
            ok = aio_frame_set_running(dst);
        }
    }
    if (!ok) {
        for (size_t j = 0; j < frames.len; j++) {
            aio_frame_free(VEC_AT(&frames, aio_frame, j));
        }
        vec_free(&frames);
        return ERR_NOMEM;
    }
    for (size_t j = 0; j < task->frames.len; j++) {
        aio_frame_free(VEC_AT(&task->frames, aio_frame, j));
    }
    vec_free(&task->frames);
    task->frames = frames;
    return ERR_OK;
}

static double aio_monotonic_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An armed asyncio.Timeout (asyncio.timeout(), wait_for from 3.12): a timer
 * whose callback is the bound Timeout._on_timeout. */
static err_t aio_armed_timeout(aio_ctx *c, uint64_t handle, double when, bool live, double now) {
    py_target *t = c->t;
    uint64_t cb = 0, func, qn, type, owner = 0;
    char name[64];
    if (py_slot(t, handle, "_callback", &cb) != ERR_OK || !cb ||
        py_type_of(t, cb, &type) != ERR_OK || type != t->types.method ||
        mem_read_u64(t->m, cb + (uint64_t)t->L.meth_func, &func) != ERR_OK ||
        mem_read_u64(t->m, func + (uint64_t)t->L.func_qualname, &qn) != ERR_OK ||
        py_read_str_buf(t, qn, name, sizeof name) != ERR_OK ||
        strcmp(name, "Timeout._on_timeout") != 0 ||
        mem_read_u64(t->m, cb + (uint64_t)t->L.meth_self, &owner) != ERR_OK || !owner) {
        return ERR_OK;
    }
    aio_resource *r = aio_resource_get(c, owner, AIO_KIND_TIMEOUT);
    if (!r) {
        return ERR_NOMEM;
    }
    r->has_deadline = true;
    r->deadline = when;
    if (live) {
        r->remaining = when - now;
        r->has_remaining = true;
    }
    uint64_t task = 0, *slot;
    if (py_attr(t, owner, "_task", &task) == ERR_OK && task && aio_is_task(c, task) &&
        r->members.len == 0) {
        if (!(slot = vec_push(&r->members))) {
            return ERR_NOMEM;
        }
        *slot = task;
        snprintf(r->detail, sizeof r->detail, "guards task 0x%llx", (unsigned long long)task);
    }
    return ERR_OK;
}

/* The loop's timer heap: sleep, 3.11 wait_for and asyncio.wait deadlines (a TimerHandle
 * whose _args start with the future; _when is the deadline on the loop's
 * clock) and armed Timeouts. */
static err_t aio_timers(aio_ctx *c, const aio_loop *l) {
    py_target *t = c->t;
    aio_model *m = c->model;
    uint64_t sched;
    if (py_attr(t, l->id, "_scheduled", &sched) != ERR_OK || !sched) {
        return ERR_OK;
    }
    /* asyncio's clock is time.monotonic(), the same on this machine. */
    bool live = strcmp(m->target.kind, "live") == 0 && strstr(l->type, "uvloop") == NULL;
    double now = live ? aio_monotonic_now() : 0;
    vec handles, args;
    vec_init(&handles, sizeof(uint64_t));
    vec_init(&args, sizeof(uint64_t));
    u64map when;
    u64map_init(&when);
    err_t e = ERR_OK;
    if (py_list_items(t, sched, &handles) == ERR_OK && handles.len <= AIO_TIMERS_MAX) {
        for (size_t i = 0; i < handles.len && e == ERR_OK; i++) {
            uint64_t h = *VEC_AT(&handles, uint64_t, i), a = 0, w = 0, bits;
            double d;
            if (py_slot(t, h, "_when", &w) != ERR_OK || !w || py_read_float(t, w, &d) != ERR_OK) {
                continue;
            }
            args.len = 0;
            if (py_slot(t, h, "_args", &a) == ERR_OK && a &&
                py_tuple_items(t, a, &args) == ERR_OK && args.len) {
                memcpy(&bits, &d, sizeof bits);
                u64map_put(&when, *VEC_AT(&args, uint64_t, 0), bits);
            }
            e = aio_armed_timeout(c, h, d, live, now);
        }
    }
    for (size_t i = 0; i < m->resources.len; i++) {
        aio_resource *r = VEC_AT(&m->resources, aio_resource, i);
        uint64_t bits;
        if ((r->kind == AIO_KIND_SLEEP || r->kind == AIO_KIND_TIMEOUT ||
             r->kind == AIO_KIND_WAIT) &&
            !r->has_deadline && u64map_get(&when, r->future ? r->future : r->id, &bits)) {
            memcpy(&r->deadline, &bits, sizeof r->deadline);
            r->has_deadline = true;
            if (live) {
                r->remaining = r->deadline - now;
                r->has_remaining = true;
            }
        }
    }
    u64map_free(&when);
    vec_free(&handles);
    vec_free(&args);
    return e;
}

err_t aio_read_loops(aio_ctx *c) {
    aio_model *m = c->model;
    for (size_t i = 0; i < m->tasks.len; i++) {
        aio_task *task = VEC_AT(&m->tasks, aio_task, i);
        if (task->loop && task->loop != c->t->types.none && !aio_loop_get(c, task->loop)) {
            return ERR_NOMEM;
        }
    }
    for (size_t i = 0; i < m->threads.len; i++) {
        aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        uint64_t loop = aio_thread_loop(c, th);
        if (!loop) {
            continue;
        }
        aio_loop *l = aio_loop_get(c, loop);
        if (!l) {
            return ERR_NOMEM;
        }
        l->thread = th->native_id;
        l->running_task = aio_current_task(c, th, loop);
        uint64_t idx;
        if (l->running_task && u64map_get(&c->task_index, l->running_task, &idx)) {
            err_t e = aio_splice_running(c, th, VEC_AT(&m->tasks, aio_task, idx));
            if (e != ERR_OK) {
                return e;
            }
        }
    }
    /* Tasks whose coroutine runs on some thread without being its loop's
     * current task: the outer task of a nested loop run, a task stepped by
     * hand. Thread frames by address, once. */
    u64map on_stack;
    u64map_init(&on_stack);
    for (size_t k = 0; k < m->threads.len; k++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, k);
        for (size_t f = 0; f < th->frames.len; f++) {
            uint64_t a = VEC_AT(&th->frames, aio_frame, f)->addr;
            if (a && !u64map_put(&on_stack, a, k)) {
                u64map_free(&on_stack);
                return ERR_NOMEM;
            }
        }
    }
    for (size_t i = 0; i < m->tasks.len; i++) {
        aio_task *task = VEC_AT(&m->tasks, aio_task, i);
        uint64_t k;
        if (task->running_thread || task->state != AIO_STATE_PENDING || !task->frames.len ||
            task->waits_kind != AIO_KIND_NONE ||
            !u64map_get(&on_stack, VEC_AT(&task->frames, aio_frame, task->frames.len - 1)->addr,
                        &k)) {
            continue;
        }
        err_t e = aio_splice_running(c, VEC_AT(&m->threads, aio_thread, k), task);
        if (e != ERR_OK) {
            u64map_free(&on_stack);
            return e;
        }
    }
    u64map_free(&on_stack);
    for (size_t i = 0; i < m->loops.len; i++) {
        err_t e = aio_timers(c, VEC_AT(&m->loops, aio_loop, i));
        if (e != ERR_OK) {
            return e;
        }
    }
    return ERR_OK;
}

static err_t aio_add_awaited_by(aio_ctx *c, uint64_t child, uint64_t parent) {
    uint64_t idx;
    if (!u64map_get(&c->task_index, child, &idx)) {
        return ERR_OK; /* not a task we found (e.g. done and unregistered) */
    }
    vec *v = &VEC_AT(&c->model->tasks, aio_task, idx)->awaited_by;
    return u64vec_add_unique(v, parent) ? ERR_OK : ERR_NOMEM;
}

/* 3.14+ record awaiters themselves (fut_awaited_by) for task->task awaits,
 * gather, shield and TaskGroup, with known holes (as_completed, eager first
 * steps). An edge only the interpreter has joins the graph; every
 * disagreement is reported. */
static err_t aio_merge_interp_awaiters(aio_ctx *c) {
    aio_model *m = c->model;
    size_t only_interp = 0, only_ours = 0;
    for (size_t i = 0; i < m->tasks.len; i++) {
        aio_task *task = VEC_AT(&m->tasks, aio_task, i);
        if (task->state != AIO_STATE_PENDING) {
            continue;
        }
        const vec *interp = task->awaited_by_interp;
        for (size_t k = 0; interp && k < interp->len; k++) {
            uint64_t by = *VEC_AT(interp, uint64_t, k);
            if (!u64vec_has(&task->awaited_by, by)) {
                if (!u64vec_push(&task->awaited_by, by)) {
                    return ERR_NOMEM;
                }
                only_interp++;
            }
        }
        for (size_t k = 0; k < task->awaited_by.len; k++) {
            if (!interp || !u64vec_has(interp, *VEC_AT(&task->awaited_by, uint64_t, k))) {
                only_ours++;
            }
        }
    }
    if (only_interp) {
        aio_warn(m, "%zu awaited-by edges come only from the interpreter's own records", only_interp);
    }
    if (only_ours) {
        aio_warn(m, "%zu awaited-by edges were rebuilt by snarl but are missing from the "
                    "interpreter's own records", only_ours);
    }
    return ERR_OK;
}

err_t aio_link(aio_ctx *c) {
    aio_model *m = c->model;
    for (size_t i = 0; i < m->tasks.len; i++) {
        aio_task *task = VEC_AT(&m->tasks, aio_task, i);
        if (!task->waits_on) {
            continue;
        }
        err_t e = ERR_OK;
        if (task->waits_kind == AIO_KIND_TASK) {
            e = aio_add_awaited_by(c, task->waits_on, task->id);
        } else {
            uint64_t idx;
            if (u64map_get(&c->resource_index, task->waits_on, &idx)) {
                const aio_resource *r = VEC_AT(&m->resources, aio_resource, idx);
                for (size_t k = 0; k < r->members.len && e == ERR_OK; k++) {
                    e = aio_add_awaited_by(c, *VEC_AT(&r->members, uint64_t, k), task->id);
                }
            }
        }
        if (e != ERR_OK) {
            return e;
        }
    }
    return c->A.fut_awaited_by != PY_NONE ? aio_merge_interp_awaiters(c) : ERR_OK;
}
