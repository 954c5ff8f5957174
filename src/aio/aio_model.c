/* Builds the whole model in one pass over the target (threads, then tasks,
 * loops and links), and the lookups and names the other layers use. After
 * aio_build returns, nothing reads target memory. */
#include "aio_int.h"

#include <stdlib.h>
#include <string.h>

static const char *const aio_kind_names[AIO_KIND_COUNT] = {
    [AIO_KIND_NONE] = "none",         [AIO_KIND_TASK] = "task",
    [AIO_KIND_FUTURE] = "future",     [AIO_KIND_SLEEP] = "sleep",
    [AIO_KIND_LOCK] = "lock",         [AIO_KIND_SEMAPHORE] = "semaphore",
    [AIO_KIND_CONDITION] = "condition", [AIO_KIND_EVENT] = "event",
    [AIO_KIND_QUEUE] = "queue",       [AIO_KIND_BARRIER] = "barrier",
    [AIO_KIND_GATHER] = "gather",     [AIO_KIND_SHIELD] = "shield",
    [AIO_KIND_TIMEOUT] = "timeout",   [AIO_KIND_TASKGROUP] = "taskgroup",
    [AIO_KIND_WAIT] = "wait",
    [AIO_KIND_EXECUTOR] = "executor", [AIO_KIND_IO] = "io",
    [AIO_KIND_OTHER] = "other",       [AIO_KIND_THREAD_LOCK] = "thread-lock",
    [AIO_KIND_CFUTURE] = "concurrent-future", [AIO_KIND_THREAD_EVENT] = "thread-event",
    [AIO_KIND_THREAD_CONDITION] = "thread-condition", [AIO_KIND_THREAD_QUEUE] = "thread-queue",
};

const char *aio_kind_name(aio_kind k) {
    return (unsigned)k < AIO_KIND_COUNT ? aio_kind_names[k] : "other";
}

const char *aio_state_name(aio_state s) {
    switch (s) {
    case AIO_STATE_PENDING:
        return "pending";
    case AIO_STATE_DONE:
        return "done";
    case AIO_STATE_CANCELLED:
        return "cancelled";
    default:
        return "unknown";
    }
}

const aio_task *aio_find_task(const aio_model *m, uint64_t id) {
    uint64_t idx;
    if (m->task_index.count) {
        return u64map_get(&m->task_index, id, &idx) ? VEC_AT(&m->tasks, aio_task, idx) : NULL;
    }
    for (size_t i = 0; i < m->tasks.len; i++) {
        const aio_task *t = VEC_AT(&m->tasks, aio_task, i);
        if (t->id == id) {
            return t;
        }
    }
    return NULL;
}

/* A task's place in the order, sorted in place of the task: the records
 * are ten times larger, and sorting them was a tenth of `tasks`. */
typedef struct aio_task_key {
    uint64_t loop, id;
    uint32_t done; /* not pending */
    uint32_t at;   /* index in the unsorted tasks */
} aio_task_key;

/* Pending first, then by loop, then by address: a stable order for every
 * view and for diffs between two runs. */
static int aio_task_key_cmp(const void *a, const void *b) {
    const aio_task_key *x = a, *y = b;
    if (x->done != y->done) {
        return x->done < y->done ? -1 : 1;
    }
    if (x->loop != y->loop) {
        return x->loop < y->loop ? -1 : 1;
    }
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The keys sorted, then each cycle of the permutation moved through one
 * spare record. */
err_t aio_sort_tasks(aio_model *m) {
    size_t n = m->tasks.len;
    if (n < 2) {
        return ERR_OK;
    }
    aio_task_key *keys = util_alloc(n * sizeof *keys);
    if (!keys) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const aio_task *t = VEC_AT(&m->tasks, aio_task, i);
        keys[i] = (aio_task_key){t->loop, t->id, t->state != AIO_STATE_PENDING, (uint32_t)i};
    }
    qsort(keys, n, sizeof *keys, aio_task_key_cmp);
    /* keys[k].at is the task that goes to k; a placed k is marked at == k. */
    aio_task *tasks = m->tasks.data;
    for (size_t i = 0; i < n; i++) {
        if (keys[i].at == i) {
            continue;
        }
        aio_task spare = tasks[i];
        size_t k = i;
        while (keys[k].at != i) {
            size_t from = keys[k].at;
            tasks[k] = tasks[from];
            keys[k].at = (uint32_t)k;
            k = from;
        }
        tasks[k] = spare;
        keys[k].at = (uint32_t)k;
    }
    util_free(keys);
    return ERR_OK;
}

const char *aio_type_name(aio_ctx *c, uint64_t type) {
    uint64_t v;
    if (u64map_get(&c->type_names, type, &v)) {
        return (const char *)(uintptr_t)v;
    }
    char name[AIO_TYPE_NAME_MAX];
    py_type_name(c->t, type, name, sizeof name);
    const char *s = aio_intern(c->model, name);
    if (s) {
        u64map_put(&c->type_names, type, (uint64_t)(uintptr_t)s); /* a lost entry costs time only */
    }
    return s;
}

static void aio_ctx_free(aio_ctx *c) {
    u64map_free(&c->type_names);
    u64map_free(&c->frame_rules);
    vec_free(&c->holdings);
    u64map_free(&c->aexit_funcs);
    u64set_free(&c->seen_tasks);
    u64set_free(&c->c_task_types);
    u64set_free(&c->c_future_types);
    u64set_free(&c->py_task_types);
    u64set_free(&c->py_future_types);
    u64set_free(&c->other_types);
    u64map_free(&c->task_index);
    u64map_free(&c->resource_index);
    u64map_free(&c->fw_types);
    u64map_free(&c->fw_req_codes);
    u64map_free(&c->fw_stream_types);
    vec_free(&c->fw_stream_refs);
    u64set_free(&c->registry_sets);
}

static err_t aio_index_tasks(aio_ctx *c) {
    u64map_free(&c->task_index);
    if (!u64map_reserve(&c->task_index, c->model->tasks.len)) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < c->model->tasks.len; i++) {
        if (!u64map_put(&c->task_index, VEC_AT(&c->model->tasks, aio_task, i)->id, i)) {
            return ERR_NOMEM;
        }
    }
    return ERR_OK;
}

static err_t aio_build_tasks(py_target *t, const aio_options *opt, aio_model *model) {
    aio_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.model = model;
    c.opt = opt;
    vec_init(&c.fw_stream_refs, sizeof(aio_fw_ref));
    vec_init(&c.holdings, sizeof(aio_holding));
    err_t e = mem_read_u64(t->m, t->runtime + (uint64_t)t->L.rt_interp_head, &c.interp);
    if (e != ERR_OK || !c.interp) {
        return err_set(t->err, ERR_CORE, "the main interpreter is not readable");
    }
    e = aio_layout_init(&c);
    if (e == ERR_OK && opt->running_only) {
        e = aio_find_running_tasks(&c);
    } else if (e == ERR_OK) {
        e = aio_find_tasks(&c);
    }
    if (e == ERR_OK) {
        /* The list is whole: doubling left up to half of it unused (a
         * third at 100k tasks), which every later phase would carry. */
        vec_shrink(&model->tasks);
        e = aio_sort_tasks(model);
    }
    if (e == ERR_OK) {
        e = aio_index_tasks(&c);
    }
    if (e == ERR_OK) {
        e = aio_read_loops(&c);
    }
    if (e == ERR_OK) {
        e = aio_link(&c);
    }
    if (e == ERR_OK && opt->reachability) {
        e = aio_reachability(&c);
    }
    if (e == ERR_OK && opt->health) {
        e = aio_read_health(&c);
    }
    if (model->tasks_truncated) {
        aio_warn(model, "a task registry is damaged or too long; some tasks may be missing");
    }
    /* The task index outlives the build: the views look tasks up by id. */
    model->task_index = c.task_index;
    u64map_init(&c.task_index);
    aio_ctx_free(&c);
    return e == ERR_NOMEM ? err_set(t->err, ERR_NOMEM, NULL) : e;
}

err_t aio_build(py_target *t, const aio_options *opt, aio_model *model) {
    err_t e = aio_build_threads(t, model);
    if (e == ERR_OK && opt && (opt->tasks || opt->running_only)) {
        e = aio_build_tasks(t, opt, model);
    }
    return e;
}

bool aio_frame_names(aio_model *m, aio_frame *f, uint64_t code, const char *function,
                     const char *file, int nlocalsplus) {
    uint64_t p;
    if (!u64map_get(&m->name_index, code, &p)) {
        aio_name *n = util_arena_alloc(&m->arena, sizeof *n);
        if (!n || !(n->function = aio_text(m, function ? function : "<unknown>")) ||
            !(n->file = aio_text(m, file ? file : "<unknown>"))) {
            return false;
        }
        n->code = code;
        n->nlocalsplus = nlocalsplus;
        p = (uint64_t)(uintptr_t)n;
        if (!u64map_put(&m->name_index, code, p)) {
            return false; /* the arena keeps the record until the model goes */
        }
    }
    f->name = (const aio_name *)(uintptr_t)p;
    return true;
}

/* FNV-1a, never 0 (the map's empty key). */
static uint64_t aio_intern_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    }
    return h ? h : 1;
}

char *aio_text(aio_model *m, const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = util_arena_alloc(&m->arena, n);
    return copy ? memcpy(copy, s, n) : NULL;
}

const char *aio_intern(aio_model *m, const char *s) {
    if (m->strings.elem == 0) {
        vec_init(&m->strings, sizeof(char *)); /* a model built by hand */
    }
    /* Two texts with one hash take the next keys. */
    for (uint64_t key = aio_intern_hash(s);; key = key + 1 ? key + 1 : 1) {
        uint64_t idx;
        if (!u64map_get(&m->string_index, key, &idx)) {
            char **slot = vec_push(&m->strings);
            char *copy = slot ? util_strdup(s) : NULL;
            if (!copy || !u64map_put(&m->string_index, key, m->strings.len)) {
                util_free(copy);
                if (slot) {
                    m->strings.len--;
                }
                return NULL;
            }
            return *slot = copy;
        }
        const char *have = *VEC_AT(&m->strings, char *, idx - 1);
        if (strcmp(have, s) == 0) {
            return have;
        }
    }
}

static aio_frame_extra *aio_frame_extra_of(aio_frame *f) {
    if (!f->extra && (f->extra = util_alloc(sizeof *f->extra)) != NULL) {
        f->extra->task = 0;
        f->extra->running = false;
        vec_init(&f->extra->locals, sizeof(aio_local));
    }
    return f->extra;
}

vec *aio_frame_locals(aio_frame *f) {
    aio_frame_extra *x = aio_frame_extra_of(f);
    return x ? &x->locals : NULL;
}

bool aio_frame_set_task(aio_frame *f, uint64_t task) {
    aio_frame_extra *x = aio_frame_extra_of(f);
    if (x) {
        x->task = task;
    }
    return x != NULL;
}

bool aio_frame_set_running(aio_frame *f) {
    aio_frame_extra *x = aio_frame_extra_of(f);
    if (x) {
        x->running = true;
    }
    return x != NULL;
}

void aio_frame_free(aio_frame *f) {
    if (!f->extra) {
        return;
    }
    for (size_t i = 0; i < f->extra->locals.len; i++) {
        aio_local *l = VEC_AT(&f->extra->locals, aio_local, i);
        util_free(l->name);
        util_free(l->repr);
    }
    vec_free(&f->extra->locals);
    util_free(f->extra);
    f->extra = NULL;
}

static void aio_frames_free(vec *frames) {
    for (size_t k = 0; k < frames->len; k++) {
        aio_frame_free(VEC_AT(frames, aio_frame, k));
    }
    vec_free(frames);
}

void aio_resource_init(aio_resource *r, uint64_t id, aio_kind kind) {
    memset(r, 0, sizeof *r);
    r->id = id;
    r->kind = kind;
    vec_init(&r->waiters, sizeof(uint64_t));
    vec_init(&r->members, sizeof(uint64_t));
    vec_init(&r->holders, sizeof(uint64_t));
    vec_init(&r->holder_sites, sizeof(aio_site));
    vec_init(&r->possible_holders, sizeof(uint64_t));
    vec_init(&r->resolvers, sizeof(uint64_t));
    vec_init(&r->thread_holders, sizeof(int64_t));
    vec_init(&r->thread_waiters, sizeof(int64_t));
}

void aio_model_free(aio_model *model) {
    for (size_t i = 0; i < model->threads.len; i++) {
        aio_frames_free(&VEC_AT(&model->threads, aio_thread, i)->frames);
    }
    vec_free(&model->threads);
    for (size_t i = 0; i < model->tasks.len; i++) {
        aio_task *t = VEC_AT(&model->tasks, aio_task, i);
        aio_frames_free(&t->frames);
        vec_free(&t->awaits);
        vec_free(&t->awaited_by);
        if (t->awaited_by_interp) {
            vec_free(t->awaited_by_interp);
            util_free(t->awaited_by_interp);
        }
        util_free(t->created_at);
        util_free(t->request);
    }
    vec_free(&model->tasks);
    util_arena_free(&model->arena);
    vec_free(&model->loops);
    for (size_t i = 0; i < model->resources.len; i++) {
        aio_resource *r = VEC_AT(&model->resources, aio_resource, i);
        vec_free(&r->waiters);
        vec_free(&r->members);
        vec_free(&r->holders);
        vec_free(&r->holder_sites);
        vec_free(&r->possible_holders);
        vec_free(&r->resolvers);
        vec_free(&r->thread_holders);
        vec_free(&r->thread_waiters);
    }
    vec_free(&model->resources);
    for (size_t i = 0; i < model->warnings.len; i++) {
        util_free(*VEC_AT(&model->warnings, char *, i));
    }
    vec_free(&model->warnings);
    vec_free(&model->chains);
    u64map_free(&model->name_index);
    for (size_t i = 0; i < model->strings.len; i++) {
        util_free(*VEC_AT(&model->strings, char *, i));
    }
    vec_free(&model->strings);
    u64map_free(&model->string_index);
    u64map_free(&model->task_index);
    aio_heap_free(&model->heap);
    util_free(model->target.executable);
}
