/* Internals shared by the asyncio layer's files: the per-version layout of
 * the C Future and Task, and the steps that build the model. */
#ifndef SNARL_AIO_INT_H
#define SNARL_AIO_INT_H

#include "aio.h"

/* Tasks we follow in one registry or list; a million-task program fits
 * sixteen times over. */
#define AIO_TASKS_MAX (1u << 24)
/* Links of one await chain (coroutines, generators, wrappers). */
#define AIO_CHAIN_MAX 1024
/* Bytes of a C TaskObj we read at most (168 in 3.14). */
#define AIO_TASK_SIZE_MAX_READ 512
/* The longest type name kept for a task or what it waits on (a subclass
 * or framework name); a longer one is cut. */
#define AIO_TYPE_NAME_MAX 64

typedef struct aio_layout {
    /* FutureObj */
    int32_t fut_loop, fut_callback0, fut_callbacks, fut_result, fut_exception, fut_source_tb;
    int32_t fut_state; /* int32 enum: 0 pending, 1 cancelled, 2 finished */
    int32_t fut_cancel_msg, fut_cancelled_exc;
    int32_t fut_dict; /* its own dict slot (3.11, 3.12); managed from 3.13 */
    int32_t fut_awaited_by, fut_awaited_by_is_set; /* 3.14+ */
    /* TaskObj */
    int32_t task_fut_waiter, task_coro, task_name, task_context, task_num_cancels, task_node;
    uint32_t task_size; /* bytes of a TaskObj we read */
    /* _PyThreadStateImpl and PyInterpreterState (running loop, task lists) */
    int32_t ts_running_loop, ts_running_task, ts_tasks_head, is_tasks_head;
    /* _asyncio module state: md_state, then the WeakSet and set of tasks
     * that are not _asyncio.Task instances (3.14+) */
    int32_t mod_state, st_non_asyncio_tasks, st_non_asyncio_eager_tasks;
    /* 3.11 keeps the running loop in a _RunningLoopHolder in the thread's
     * dict; 3.12 the loop itself */
    bool running_loop_holder;
} aio_layout;

/* Object kinds of the asyncio world, told apart by type. */
typedef enum aio_objkind {
    AIO_OBJ_OTHER,
    AIO_OBJ_C_TASK,  /* _asyncio.Task or a subclass */
    AIO_OBJ_C_FUTURE,
    AIO_OBJ_PY_TASK, /* asyncio.tasks._PyTask and subclasses */
    AIO_OBJ_PY_FUTURE,
} aio_objkind;

/* An `async with` on self that a task's frame is inside of, seen on its
 * value stack while the task was read (aio_task_holds): the holder scan
 * then reads no frame again. */
typedef struct aio_holding {
    uint64_t self;
    uint64_t task;  /* its id */
    size_t frame;   /* index in the task's frames */
} aio_holding;

typedef struct aio_ctx {
    py_target *t;
    aio_model *model;
    const aio_options *opt;
    aio_layout A;
    u64set seen_tasks;
    /* Type cache: type address -> aio_objkind + 1. */
    u64set c_task_types, c_future_types, py_task_types, py_future_types, other_types;
    uint64_t interp; /* the main interpreter */
    u64map task_index;     /* task id -> index in model->tasks */
    u64map resource_index; /* resource id -> index in model->resources */
    /* Frameworks (aio_frameworks.c): type -> aio_fw kind; code -> the local
     * holding a request; stream types; references to memory streams. */
    u64map fw_types, fw_req_codes, fw_stream_types;
    vec fw_stream_refs; /* aio_fw_ref */
    u64set registry_sets; /* the `data` sets of the task registries' WeakSets */
    u64map type_names;    /* type address -> its interned name (aio_type_name) */
    u64map frame_rules;   /* a frame's pooled function name -> what aio_classify reads of it */
    vec holdings;         /* aio_holding, when the health is asked for */
    u64map aexit_funcs;   /* function -> 2 if an `async with` exit aio_frame_holds knows, else 1 */
    bool fw_streams;    /* a memory stream is among the resources */
} aio_ctx;

/* Notes what a pending task just read holds (aio_holding); the frames are
 * then still in the memory cache. */
err_t aio_task_holds(aio_ctx *c, const aio_task *task);

/* A type's name, as py_type_name writes it into AIO_TYPE_NAME_MAX bytes
 * ("?" when unreadable), interned and read once per type: a million tasks
 * share a few types, and reading each one's name was a twentieth of
 * `tasks`. NULL when out of memory. */
const char *aio_type_name(aio_ctx *c, uint64_t type);

/* A reference from a task's frame to one end of an anyio memory stream. */
typedef struct aio_fw_ref {
    uint64_t stream, state, task;
    bool send, owned;
} aio_fw_ref;

/* Frameworks on asyncio (aio_frameworks.c). */
/* Overwrites buf with snarl's name for obj's type when it is one of
 * anyio's or httpcore's modelled types ("anyio.Lock"). */
void aio_fw_type_name(aio_ctx *c, uint64_t obj, uint64_t type, char *buf, size_t cap);
void aio_fw_resource_added(aio_ctx *c, const aio_resource *r);
/* Whether a framework lock-like resource is held now; false when r is not one. */
bool aio_fw_locked(aio_ctx *c, const aio_resource *r, bool *locked);
/* Holders of anyio's Lock and CapacityLimiter and of httpcore's pool. */
err_t aio_fw_holders(aio_ctx *c);
/* A reference found in a task's frame: notes those to memory streams. */
void aio_fw_note_ref(aio_ctx *c, uint64_t obj, uint64_t task, bool owned);
/* Resolvers and outside references of memory streams, from those notes. */
err_t aio_fw_resolvers(aio_ctx *c);
/* Sets task->request from its outermost frames. */
err_t aio_fw_request(aio_ctx *c, aio_task *task);

/* The resource with this id, added with kind if new; NULL when out of memory. */
aio_resource *aio_resource_get(aio_ctx *c, uint64_t id, aio_kind kind);

err_t aio_layout_init(aio_ctx *c);
/* The callback of an asyncio future whose function's qualname contains
 * needle, or 0 (aio_chain.c). */
uint64_t aio_callback_named(aio_ctx *c, uint64_t fut, const char *needle);
/* The first of the objects in cbs (uint64_t) that is a Python function
 * whose qualname contains needle, or 0 (aio_chain.c). */
uint64_t aio_function_named(aio_ctx *c, const vec *cbs, const char *needle);
aio_objkind aio_object_kind(aio_ctx *c, uint64_t obj);
bool aio_is_task(aio_ctx *c, uint64_t obj);
/* A task's state read from the task itself; AIO_STATE_UNKNOWN if unreadable. */
aio_state aio_task_state(aio_ctx *c, uint64_t task);

err_t aio_build_threads(py_target *t, aio_model *model);
err_t aio_find_tasks(aio_ctx *c);
/* Only the tasks the threads' loops are running right now. */
err_t aio_find_running_tasks(aio_ctx *c);
/* Reads the locals of each frame of a task (bounded reprs). */
err_t aio_read_locals(aio_ctx *c, aio_task *task);
err_t aio_read_task(aio_ctx *c, uint64_t addr, const char *found_by);
err_t aio_read_loops(aio_ctx *c);
err_t aio_link(aio_ctx *c);
/* The object graph (aio_reach.c) into model->heap, for the reachability
 * passes of src/ana/. */
err_t aio_reachability(aio_ctx *c);
/* For tests/probe: the references aio_reachability enumerates of each
 * object (uint64_t, PY_REF_BORROWED marking borrowed ones), and whether
 * its whole traverse is known. */
typedef void (*aio_refs_cb)(void *ctx, uint64_t obj, err_t e, const vec *refs, bool complete);
err_t aio_reach_each_refs(aio_ctx *c, const uint64_t *objs, size_t n, aio_refs_cb cb, void *ctx);
/* Holders, resolvers, loop health (aio_health.c). */
err_t aio_read_health(aio_ctx *c);
/* What each thread blocks on and runs, from its frames (aio_twait.c): for
 * every command, before the tasks are read. */
void aio_thread_waits(py_target *t, aio_thread *th);
/* Threads in the wait-for graph (aio_twait.c): the resources threads wait
 * on, who holds each threading lock, which worker runs which concurrent
 * future, and the links between asyncio and concurrent futures. */
err_t aio_thread_resources(aio_ctx *c);

/* Frees what a frame owns (its locals). */
void aio_frame_free(aio_frame *f);

#endif
