/* Finding every task: the registries each version keeps (3.11 _all_tasks;
 * 3.12/3.13 _scheduled_tasks and _eager_tasks; 3.14+ the per-thread and
 * per-interpreter lists and the module's sets for other task types), or the
 * GC lists in heap mode; and reading each task's own fields. */
#include "aio_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The llist_node of 3.14+ task lists: {next, prev}. */
#define AIO_NODE_NEXT 0
#define AIO_NODE_PREV 8

static err_t aio_add_found(aio_ctx *c, uint64_t obj, const char *how) {
    if (!obj || obj == c->t->types.none || !aio_is_task(c, obj)) {
        return ERR_OK;
    }
    return aio_read_task(c, obj, how);
}

/* Members of a weakref.WeakSet: its `data` set holds weakrefs; a dead one
 * points at None. */
static err_t aio_weakset_each(aio_ctx *c, uint64_t weakset, const char *how) {
    py_target *t = c->t;
    uint64_t data;
    if (!weakset || py_attr(t, weakset, "data", &data) != ERR_OK || !data) {
        return ERR_OK;
    }
    if (u64set_add(&c->registry_sets, data) < 0) {
        return ERR_NOMEM;
    }
    vec refs;
    vec_init(&refs, sizeof(uint64_t));
    err_t e = py_set_items(t, data, &refs);
    if (e != ERR_OK) {
        c->model->tasks_truncated = true;
    }
    for (size_t i = 0; i < refs.len; i++) {
        uint64_t obj;
        if (mem_read_u64(t->m, *VEC_AT(&refs, uint64_t, i) + (uint64_t)t->L.wr_object, &obj) ==
                ERR_OK &&
            (e = aio_add_found(c, obj, how)) != ERR_OK) {
            break;
        }
    }
    vec_free(&refs);
    return e == ERR_NOMEM ? e : ERR_OK;
}

static err_t aio_set_each(aio_ctx *c, uint64_t set, const char *how) {
    if (!set || set == c->t->types.none) {
        return ERR_OK;
    }
    vec items;
    vec_init(&items, sizeof(uint64_t));
    err_t e = py_set_items(c->t, set, &items);
    if (e != ERR_OK) {
        c->model->tasks_truncated = true;
    }
    for (size_t i = 0; i < items.len; i++) {
        if ((e = aio_add_found(c, *VEC_AT(&items, uint64_t, i), how)) != ERR_OK) {
            break;
        }
    }
    vec_free(&items);
    return e == ERR_NOMEM ? e : ERR_OK;
}

/* A 3.14+ circular list through TaskObj.task_node; the list does not own
 * its tasks, and a node whose prev does not point back means damage. */
static err_t aio_list_each(aio_ctx *c, uint64_t head) {
    py_target *t = c->t;
    uint64_t prev = head, node;
    if (mem_read_u64(t->m, head + AIO_NODE_NEXT, &node) != ERR_OK || !node) {
        return ERR_OK; /* never initialised: no tasks ever ran here */
    }
    /* The back links catch most damage; a loop whose links agree (crafted,
     * or torn consistently) still ends at its second visit. */
    util_cycle cycle;
    util_cycle_init(&cycle, node);
    for (uint32_t n = 0; node != head; n++) {
        uint64_t back, next;
        if (n == AIO_TASKS_MAX || mem_read_u64(t->m, node + AIO_NODE_PREV, &back) != ERR_OK ||
            back != prev || mem_read_u64(t->m, node + AIO_NODE_NEXT, &next) != ERR_OK ||
            (n && util_cycle_step(&cycle, node))) {
            c->model->tasks_truncated = true;
            return ERR_OK;
        }
        err_t e = aio_read_task(c, node - (uint64_t)c->A.task_node, "task-list");
        if (e == ERR_NOMEM) {
            return e;
        }
        prev = node;
        node = next;
    }
    return ERR_OK;
}

static uint64_t aio_module_global(aio_ctx *c, const char *module, const char *name) {
    py_target *t = c->t;
    uint64_t mod, md, v = 0;
    if (py_module(t, c->interp, module, &mod) != ERR_OK || !mod ||
        mem_read_u64(t->m, mod + (uint64_t)t->L.mod_dict, &md) != ERR_OK ||
        py_dict_get_str(t, md, name, &v) != ERR_OK) {
        return 0;
    }
    return v;
}

static int aio_heap_cb(void *ctx, uint64_t obj) {
    aio_ctx *c = ctx;
    return aio_add_found(c, obj, "heap") == ERR_NOMEM;
}

err_t aio_find_tasks(aio_ctx *c) {
    py_target *t = c->t;
    aio_model *m = c->model;
    err_t e = ERR_OK;
    /* The Python-level registries: every version has them for pure-Python
     * tasks, and 3.11-3.13 keep every task there. */
    static const char *const weaksets[] = {"_all_tasks", "_scheduled_tasks"};
    for (size_t i = 0; i < ARRAY_LEN(weaksets) && e == ERR_OK; i++) {
        e = aio_weakset_each(c, aio_module_global(c, "asyncio.tasks", weaksets[i]), "registry");
    }
    if (e == ERR_OK) {
        e = aio_set_each(c, aio_module_global(c, "asyncio.tasks", "_eager_tasks"), "registry");
    }
    if (e == ERR_OK && c->A.ts_tasks_head != PY_NONE) {
        for (size_t i = 0; i < m->threads.len && e == ERR_OK; i++) {
            const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
            e = aio_list_each(c, th->tstate + (uint64_t)c->A.ts_tasks_head);
        }
        if (e == ERR_OK) {
            e = aio_list_each(c, c->interp + (uint64_t)c->A.is_tasks_head);
        }
        uint64_t mod, state, set;
        if (e == ERR_OK && py_module(t, c->interp, "_asyncio", &mod) == ERR_OK && mod &&
            mem_read_u64(t->m, mod + (uint64_t)c->A.mod_state, &state) == ERR_OK && state) {
            if (mem_read_u64(t->m, state + (uint64_t)c->A.st_non_asyncio_tasks, &set) == ERR_OK) {
                e = aio_weakset_each(c, set, "registry");
            }
            if (e == ERR_OK && mem_read_u64(t->m, state + (uint64_t)c->A.st_non_asyncio_eager_tasks,
                                            &set) == ERR_OK) {
                e = aio_set_each(c, set, "registry");
            }
        }
    }
    m->tasks_found_by = c->A.ts_tasks_head != PY_NONE ? "task lists and registries" : "registries";
    if (e == ERR_OK && c->opt->all_objects) {
        bool truncated = false;
        e = py_gc_each(t, c->interp, aio_heap_cb, c, &truncated);
        if (truncated) {
            aio_warn(m, "the GC lists are damaged or too long; the heap scan is incomplete");
        }
        m->tasks_found_by = c->A.ts_tasks_head != PY_NONE ? "task lists, registries and the GC heap"
                                                          : "registries and the GC heap";
        if (e == ERR_READ) {
            aio_warn(m, "the GC lists are unreadable; no heap scan");
            e = ERR_OK;
        }
    }
    return e;
}

static void aio_task_name(aio_ctx *c, uint64_t name, aio_task *task) {
    char buf[256];
    int64_t n;
    if (!name || name == c->t->types.none) {
        task->name = aio_text(c->model, "");
    } else if (py_read_str_buf(c->t, name, buf, sizeof buf) == ERR_OK) {
        task->name = aio_text(c->model, buf);
    } else if (py_read_long(c->t, name, &n) == ERR_OK) {
        /* 3.13+ name tasks lazily: an int counter until get_name(). */
        snprintf(buf, sizeof buf, "Task-%" PRId64, n);
        task->name = aio_text(c->model, buf);
    } else {
        snprintf(buf, sizeof buf, "<unreadable name at 0x%" PRIx64 ">", name);
        task->name = aio_text(c->model, buf);
    }
}

/* "file:line" of the frame that created the task, from the
 * _source_traceback asyncio debug mode keeps (a list of FrameSummary): the
 * innermost one outside asyncio itself, i.e. the caller of create_task. */
static char *aio_created_at(aio_ctx *c, uint64_t tb) {
    py_target *t = c->t;
    if (!tb || tb == t->types.none) {
        return NULL;
    }
    vec items;
    vec_init(&items, sizeof(uint64_t));
    char *out = NULL;
    if (py_list_items(t, tb, &items) == ERR_OK) {
        for (size_t i = items.len; i-- > 0 && !out;) {
            uint64_t fs = *VEC_AT(&items, uint64_t, i), file = 0, lineno = 0;
            char fbuf[512], res[600];
            int64_t line;
            if (py_slot(t, fs, "filename", &file) != ERR_OK || !file ||
                py_read_str_buf(t, file, fbuf, sizeof fbuf) != ERR_OK) {
                break;
            }
            if (strstr(fbuf, "/asyncio/") || py_slot(t, fs, "lineno", &lineno) != ERR_OK ||
                py_read_long(t, lineno, &line) != ERR_OK) {
                continue;
            }
            snprintf(res, sizeof res, "%s:%" PRId64, fbuf, line);
            out = util_strdup(res);
        }
    }
    vec_free(&items);
    return out;
}

static aio_state aio_py_state(aio_ctx *c, uint64_t obj) {
    uint64_t s;
    char buf[16];
    if (py_attr(c->t, obj, "_state", &s) != ERR_OK) {
        return AIO_STATE_UNKNOWN;
    }
    if (!s) {
        return AIO_STATE_PENDING; /* the class default, never assigned */
    }
    if (py_read_str_buf(c->t, s, buf, sizeof buf) != ERR_OK) {
        return AIO_STATE_UNKNOWN;
    }
    return strcmp(buf, "PENDING") == 0     ? AIO_STATE_PENDING
           : strcmp(buf, "CANCELLED") == 0 ? AIO_STATE_CANCELLED
           : strcmp(buf, "FINISHED") == 0  ? AIO_STATE_DONE
                                           : AIO_STATE_UNKNOWN;
}

/* A C future's fut_state: 0 pending, 1 cancelled, 2 finished. */
static aio_state aio_c_state(uint32_t st) {
    return st == 0   ? AIO_STATE_PENDING
           : st == 1 ? AIO_STATE_CANCELLED
           : st == 2 ? AIO_STATE_DONE
                     : AIO_STATE_UNKNOWN;
}

aio_state aio_task_state(aio_ctx *c, uint64_t task) {
    uint32_t st;
    if (aio_object_kind(c, task) != AIO_OBJ_C_TASK) {
        return aio_py_state(c, task);
    }
    return mem_read_u32(c->t->m, task + (uint64_t)c->A.fut_state, &st) == ERR_OK
               ? aio_c_state(st)
               : AIO_STATE_UNKNOWN;
}

/* The chain walk and classification (aio_chain.c). */
err_t aio_walk_chain(aio_ctx *c, aio_task *task, uint64_t fut_waiter);

err_t aio_read_task(aio_ctx *c, uint64_t addr, const char *found_by) {
    py_target *t = c->t;
    int added = u64set_add(&c->seen_tasks, addr);
    if (added <= 0) {
        return added < 0 ? ERR_NOMEM : ERR_OK;
    }
    if (c->model->tasks.len >= AIO_TASKS_MAX) {
        c->model->tasks_truncated = true;
        return ERR_OK;
    }
    aio_task *task = vec_push(&c->model->tasks);
    if (!task) {
        return ERR_NOMEM;
    }
    task->id = addr;
    task->found_by = found_by;
    task->state = AIO_STATE_UNKNOWN;
    vec_init(&task->frames, sizeof(aio_frame));
    vec_init(&task->awaits, sizeof(uint64_t));
    vec_init(&task->awaited_by, sizeof(uint64_t));
    uint64_t type;
    if (py_type_of(t, addr, &type) == ERR_OK && !(task->type = aio_type_name(c, type))) {
        return ERR_NOMEM;
    }
    const aio_layout *A = &c->A;
    uint64_t fut_waiter = 0, name = 0, tb = 0;
    if (aio_object_kind(c, addr) == AIO_OBJ_C_TASK) {
        uint8_t b[AIO_TASK_SIZE_MAX_READ];
        if (A->task_size > sizeof b || mem_read(t->m, addr, A->task_size, b) != ERR_OK) {
            task->name = aio_text(c->model, "<unreadable task>");
            task->truncated = true;
            return task->name ? ERR_OK : ERR_NOMEM;
        }
        task->c_task = true;
        task->loop = rd_u64(b, (size_t)A->fut_loop);
        task->state = aio_c_state(rd_u32(b, (size_t)A->fut_state));
        task->cancels = (int)(int32_t)rd_u32(b, (size_t)A->task_num_cancels);
        task->coro = rd_u64(b, (size_t)A->task_coro);
        fut_waiter = rd_u64(b, (size_t)A->task_fut_waiter);
        name = rd_u64(b, (size_t)A->task_name);
        tb = rd_u64(b, (size_t)A->fut_source_tb);
        uint64_t by = A->fut_awaited_by != PY_NONE ? rd_u64(b, (size_t)A->fut_awaited_by) : 0;
        if (by && !(task->awaited_by_interp = util_alloc(sizeof(vec)))) {
            return ERR_NOMEM;
        }
        if (by) {
            vec_init(task->awaited_by_interp, sizeof(uint64_t));
        }
        if (by && rd_u8(b, (size_t)A->fut_awaited_by_is_set)) {
            if (py_set_items(t, by, task->awaited_by_interp) != ERR_OK) {
                aio_warn(c->model,
                         "the interpreter's awaited-by record of task 0x%llx is "
                         "unreadable",
                         (unsigned long long)addr);
            }
        } else if (by && !u64vec_push(task->awaited_by_interp, by)) {
            return ERR_NOMEM;
        }
    } else {
        uint64_t v = 0;
        py_attr(t, addr, "_loop", &task->loop);
        task->state = aio_py_state(c, addr);
        py_attr(t, addr, "_coro", &task->coro);
        py_attr(t, addr, "_fut_waiter", &fut_waiter);
        py_attr(t, addr, "_name", &name);
        py_attr(t, addr, "_source_traceback", &tb);
        int64_t n;
        if (py_attr(t, addr, "_num_cancels_requested", &v) == ERR_OK && v &&
            py_read_long(t, v, &n) == ERR_OK) {
            task->cancels = (int)n;
        }
    }
    aio_task_name(c, name, task);
    task->created_at = aio_created_at(c, tb);
    if (fut_waiter == t->types.none) {
        fut_waiter = 0;
    }
    task->fut_waiter = fut_waiter;
    if (!task->name) {
        return ERR_NOMEM;
    }
    err_t e = ERR_OK;
    if (task->state == AIO_STATE_PENDING) {
        /* A task's walk pushes its chain in one run. */
        task->chain_at = c->model->chains.len;
        e = aio_walk_chain(c, task, fut_waiter);
        task->nchain = c->model->chains.len - task->chain_at;
        /* Doubling leaves up to half of each array unused, and an
         * allocation of its own costs a header and rounding, a million
         * times. Where the arena cannot take them they stay as they are. */
        vec_settle(&task->frames, &c->model->arena);
        vec_settle(&task->awaits, &c->model->arena);
    }
    if (e == ERR_OK && task->state == AIO_STATE_PENDING && c->opt->health) {
        e = aio_task_holds(c, task);
    }
    if (e == ERR_OK && task->state == AIO_STATE_PENDING && c->opt->tasks) {
        e = aio_fw_request(c, task);
    }
    if (e == ERR_OK && c->opt->locals_of == addr) {
        e = aio_read_locals(c, task);
    }
    return e;
}
