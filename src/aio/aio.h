/* The model the analysis and output layers work on: plain C structs built
 * once from the target; after it is built no more memory is read. This first
 * part holds the target and its threads with their Python stacks; asyncio
 * loops, tasks and resources join it later. */
#ifndef SNARL_AIO_H
#define SNARL_AIO_H

#include <stdbool.h>
#include <stdint.h>

#include "../py/py.h"

typedef struct aio_local {
    char *name;
    char *repr; /* bounded: AIO_REPR_MAX bytes */
} aio_local;

/* Longest repr of a local we keep (bytes of UTF-8). */
#define AIO_REPR_MAX 200

/* What a frame's code names, once per code object in the model's pool (a
 * million suspended coroutines run a handful of functions): a frame points
 * here instead of carrying the three itself. */
typedef struct aio_name {
    const char *function; /* qualname, "<unknown>" when unreadable */
    const char *file;
    uint64_t code;   /* the code object */
    int nlocalsplus; /* the code's locals, cells and free variables */
} aio_name;

/* What few frames have: a thread's frame that a running task begins at,
 * and the locals of the one task asked about. */
typedef struct aio_frame_extra {
    uint64_t task; /* in a thread's stack: the running task this frame belongs to */
    vec locals;    /* aio_local */
    /* A running task's copy of its thread's frame: its slots change as it
     * runs, so the scans do not read them. */
    bool running;
} aio_frame_extra;

typedef struct aio_frame {
    const aio_name *name; /* NULL when the frame was unreadable or is not Python */
    uint64_t addr;
    int line; /* -1 when unknown */
    /* The values on its evaluation stack (-1 when unknown), from the one
     * read of the frame: the scans of its slots need it. */
    int depth;
    aio_frame_extra *extra; /* NULL for nearly every frame */
} aio_frame;

static inline const char *aio_frame_function(const aio_frame *f) {
    return f->name ? f->name->function : NULL;
}
static inline const char *aio_frame_file(const aio_frame *f) {
    return f->name ? f->name->file : NULL;
}
/* -1 when not Python. */
static inline int aio_frame_nlocals(const aio_frame *f) {
    return f->name ? f->name->nlocalsplus : -1;
}
/* Its code object; 0 when not Python or when its slots are not to be read. */
static inline uint64_t aio_frame_code(const aio_frame *f) {
    return f->name && !(f->extra && f->extra->running) ? f->name->code : 0;
}
static inline uint64_t aio_frame_task(const aio_frame *f) {
    return f->extra ? f->extra->task : 0;
}
/* f's locals when any were read, else NULL. */
static inline const vec *aio_frame_locals_of(const aio_frame *f) {
    return f->extra && f->extra->locals.len ? &f->extra->locals : NULL;
}

/* f's locals, made empty on first use; NULL when out of memory. */
vec *aio_frame_locals(aio_frame *f);
/* Marks f as where the running task begins; false when out of memory. */
bool aio_frame_set_task(aio_frame *f, uint64_t task);
/* Marks f as a running task's copy of its thread's frame; false when out
 * of memory. */
bool aio_frame_set_running(aio_frame *f);

/* What a task's innermost frame waits on. Resources are the things a task
 * can wait for other than a task: a bare future, the primitives, sleeps,
 * combinators and I/O. */
typedef enum aio_kind {
    AIO_KIND_NONE,      /* not waiting: running, scheduled, or done */
    AIO_KIND_TASK,      /* another task, directly */
    AIO_KIND_FUTURE,    /* a future nobody in particular resolves */
    AIO_KIND_SLEEP,     /* asyncio.sleep */
    AIO_KIND_LOCK,
    AIO_KIND_SEMAPHORE, /* also BoundedSemaphore */
    AIO_KIND_CONDITION,
    AIO_KIND_EVENT,
    AIO_KIND_QUEUE, /* also LifoQueue, PriorityQueue */
    AIO_KIND_BARRIER,
    AIO_KIND_GATHER,     /* a _GatheringFuture: its children */
    AIO_KIND_SHIELD,     /* shield's outer future: its inner task */
    AIO_KIND_TIMEOUT,    /* wait_for / asyncio.timeout around the awaited thing */
    AIO_KIND_TASKGROUP,  /* TaskGroup.__aexit__ waiting for its children */
    AIO_KIND_WAIT,       /* asyncio.wait: its waiter future, for all of its tasks or the first */
    AIO_KIND_EXECUTOR,   /* a future chained to a concurrent.futures.Future */
    AIO_KIND_IO,         /* socket or stream read/write, sock_* futures */
    AIO_KIND_OTHER,      /* an awaitable snarl does not know: its type name */
    /* What a thread (not a task) blocks on (aio_twait.c). */
    AIO_KIND_THREAD_LOCK,      /* threading.Lock or RLock */
    AIO_KIND_CFUTURE,          /* concurrent.futures.Future.result() */
    AIO_KIND_THREAD_EVENT,     /* threading.Event.wait() */
    AIO_KIND_THREAD_CONDITION, /* threading.Condition.wait() */
    AIO_KIND_THREAD_QUEUE,     /* queue.Queue.get() or put() */
    AIO_KIND_COUNT,
} aio_kind;

typedef struct aio_thread {
    int64_t native_id;
    uint64_t tstate;
    int64_t interp_id;
    char name[64];
    bool holds_gil;
    vec frames;     /* aio_frame, innermost first */
    bool truncated; /* the frame walk stopped early (limit or damage) */
    bool recovered; /* part of the stack was rebuilt from the data stack */
    uint64_t ident; /* threading.get_ident() (pthread_t): what an RLock records as its owner */
    /* What it blocks on (aio_twait.c): a threading primitive or a
     * concurrent future; AIO_KIND_NONE when none is recognised. */
    aio_kind waits_kind;
    uint64_t waits_on;    /* the primitive or future */
    bool waits_timeout;   /* with a timeout: it wakes by itself */
    char waits_type[64];  /* its type name */
    /* An executor worker's current work item (_WorkItem.run on its stack). */
    uint64_t work_item;
    uint64_t work_future; /* the concurrent future the item completes */
    char work_fn[128];    /* what it calls: a qualname or a type name */
} aio_thread;

typedef struct aio_target {
    const char *kind; /* "live" or "core" */
    int pid;
    char python[32];
    char *executable;
    bool frozen;
} aio_target;

typedef enum aio_state {
    AIO_STATE_PENDING,
    AIO_STATE_DONE,
    AIO_STATE_CANCELLED,
    AIO_STATE_UNKNOWN, /* unreadable */
} aio_state;


/* Stable names for JSON and text ("lock", "queue", ...). */
const char *aio_kind_name(aio_kind k);
const char *aio_state_name(aio_state s);

typedef struct aio_site {
    const char *function; /* from the model's name pool */
    const char *file;
    int line;
} aio_site;

/* asyncio.wait's return_when. */
typedef enum aio_wait_when {
    AIO_WAIT_ALL,   /* ALL_COMPLETED: every member's end */
    AIO_WAIT_FIRST, /* FIRST_COMPLETED: any member's end */
    AIO_WAIT_ERROR, /* FIRST_EXCEPTION: a member's error, or every member's end */
} aio_wait_when;

typedef struct aio_resource {
    uint64_t id;      /* the primitive (Lock, Queue...) or the future itself */
    aio_kind kind;
    char type[64];    /* its Python type name, e.g. "Lock", "_GatheringFuture" */
    uint64_t future;  /* the future tasks actually wait on, 0 if none */
    bool has_deadline;
    double deadline;      /* loop time of the timer (sleep, timeout) */
    double remaining;     /* deadline minus the loop's clock, live targets only */
    bool has_remaining;
    vec waiters;          /* uint64_t task ids waiting on it */
    /* uint64_t task ids it stands for (gather/TaskGroup children, shield
     * inner, asyncio.wait's tasks) */
    vec members;
    size_t members_ended; /* how many of them are done or cancelled: they wake nothing now */
    char detail[128];     /* one short fact, e.g. "fd 7", "locked", "3 items" */
    vec holders;          /* uint64_t tasks inside `async with` on it (Lock, Semaphore) */
    vec holder_sites;     /* aio_site, parallel to holders: where each entered */
    vec possible_holders; /* uint64_t tasks that only reference it (explicit acquire()) */
    vec resolvers;        /* uint64_t tasks that could wake it (Event, Queue, future...) */
    bool external_refs;   /* referenced from outside the tasks' frames: someone else may wake it */
    /* Threads (aio_twait.c), int64_t native ids: those holding this
     * threading lock, or running the work item that completes this
     * concurrent future; and those blocked on it. */
    vec thread_holders;
    vec thread_waiters;
    uint64_t chained; /* run_in_executor / wrap_future: the concurrent future it mirrors */
    /* asyncio.wait (AIO_KIND_WAIT): when its members wake it, and whether
     * its timeout's timer releases it whatever they do. */
    aio_wait_when wait_when;
    bool wait_timed;
} aio_resource;

/* A zeroed resource with its id, kind and empty lists (aio_model.c frees
 * them with the model). */
void aio_resource_init(aio_resource *r, uint64_t id, aio_kind kind);

/* The request a task serves, from an ASGI scope or an aiohttp request in
 * its outermost frames (aio_frameworks.c); empty strings when unknown. */
typedef struct aio_request {
    char method[16];
    char path[256];  /* cut at this many bytes */
    char client[72]; /* "host:port" */
} aio_request;

typedef struct aio_task {
    uint64_t id; /* the task object's address */
    char *name;
    const char *type; /* "_asyncio.Task", "Task" (pure Python), a subclass name; NULL if unknown */
    /* The small fields side by side: a million tasks pay for every hole. */
    bool c_task;    /* the C layout (or a subclass of it) */
    bool truncated; /* the chain was cut (limit or damage) */
    aio_state state;
    int cancels; /* cancellation requests */
    aio_kind waits_kind;
    uint64_t loop;
    uint64_t coro;
    vec frames;         /* aio_frame: the coroutine chain, innermost first */
    uint64_t waits_on;  /* task or resource id, 0 if none */
    const char *waits_type; /* type name of what it waits on (for OTHER); NULL if unknown */
    vec awaits;      /* uint64_t ids: tasks and resources it waits for */
    vec awaited_by;  /* uint64_t task ids */
    /* 3.14+: what the interpreter's own records say (uint64_t task ids);
     * NULL when they name none, as for most tasks. */
    vec *awaited_by_interp;
    const char *found_by; /* "registry", "task-list", "heap" */
    int64_t running_thread; /* native id of the thread running it now, 0 if none */
    char *created_at; /* "file:line" from asyncio debug mode, NULL if unknown */
    uint64_t fut_waiter; /* the future its next step waits for (fut_waiter), 0 if none */
    /* Its coroutines and generators, outermost first (reachability only):
     * model.chains[chain_at .. chain_at + nchain). One array for all the
     * tasks, not a vector each: 16 bytes a task at a million tasks. */
    uint32_t chain_at, nchain;
    aio_request *request; /* NULL when it serves no request snarl can see */
} aio_task;

/* What the thread running a loop is doing. */
typedef enum aio_doing {
    AIO_DOING_UNKNOWN,   /* no thread runs it, or its stack is unreadable */
    AIO_DOING_SELECT,    /* waiting in the selector: idle */
    AIO_DOING_TASK,      /* running a task's code */
    AIO_DOING_CALLBACK,  /* running a callback that is not a task step */
    AIO_DOING_THREAD_WAIT, /* blocked on a threading primitive or a concurrent future */
} aio_doing;

typedef struct aio_loop {
    uint64_t id;
    char type[64];
    int64_t thread;       /* native id of the thread running it, 0 if none */
    uint64_t running_task;
    /* Health: what could still wake it. */
    bool health_known;    /* an asyncio loop whose internals were read */
    size_t ready;         /* handles in _ready */
    /* Where _ready's front is (its left block and index): only the loop's
     * own thread pops there, so a loop that did not move keeps it. */
    uint64_t ready_block;
    int64_t ready_index;
    size_t timers;        /* timers not cancelled in _scheduled */
    bool has_next_timer;
    double next_timer;    /* the earliest timer's deadline, loop time */
    size_t fds;           /* watched descriptors besides its own self-pipe */
    size_t executor_jobs; /* executor futures some task waits on */
    int runs;             /* run_forever frames on its thread (2+: re-entered) */
    aio_doing doing;
    const aio_frame *doing_frame; /* the loop thread's innermost frame, in model->threads */
    uint64_t self_wait_future;    /* a concurrent future only this loop would complete */
} aio_loop;

/* The target's object graph, read once for the two reachability passes
 * (src/ana/ana_reach.c): CPython's cycle collector replayed, and what
 * nothing still able to run can reach. Objects are those on the main
 * interpreter's GC lists, by index; an edge is a reference one object's
 * tp_traverse visits (or, flagged weak, the referent of a weak reference). */
#define AIO_HEAP_NONE UINT32_MAX
/* Edge flags, in the top bits of an object index (PY_GC_OBJECTS_MAX is 2^26). */
#define AIO_EDGE_BORROWED 0x80000000u /* owns no count: followed, never subtracted */
#define AIO_EDGE_WEAK 0x40000000u     /* a weak reference's referent: live code can reach it */
#define AIO_EDGE_INDEX 0x3fffffffu
/* Object flags. */
#define AIO_HO_FROZEN 1u  /* gc.freeze()'s permanent generation: never collected */
#define AIO_HO_NOCOUNT 2u /* immortal or unreadable header: its count says nothing */
#define AIO_HO_LEGACY 4u  /* a tp_del finalizer: its cyclic garbage lives on in gc.garbage */
#define AIO_HO_OPAQUE 8u  /* its references could not be read: what it holds stays counted */
/* A weakref in a task registry (the WeakSet behind asyncio.all_tasks()):
 * through it live code gets the pending tasks, never a finished one. */
#define AIO_HO_REGISTRY 16u
/* A task of the model (its graph entry in aio_heap.tasks), whose passive
 * edges the edge pass counts. */
#define AIO_HO_TASK 32u

/* A task as the graph sees it (parallel to aio_model.tasks). */
typedef struct aio_heap_task {
    uint32_t obj;           /* the task object, AIO_HEAP_NONE when not on the GC lists */
    uint32_t passive;       /* its first edges that do not run it: type, loop, name, dict */
    uint32_t wake;          /* the future its step waits for, AIO_HEAP_NONE if none or unknown */
    uint32_t chain, nchain; /* its coroutines: heap.chain[chain .. chain + nchain) */
} aio_heap_task;

typedef struct aio_heap_type {
    uint64_t addr;
    char name[48];
} aio_heap_type;

typedef struct aio_heap {
    bool built;
    const char *incomplete; /* why the collector's replay cannot be trusted; NULL if it can */
    vec objs;               /* uint64_t addresses, sorted */
    /* int32_t: ob_refcnt, capped (meaningless with AIO_HO_NOCOUNT); only
     * while the graph is built, then made into external */
    vec refcnt;
    /* Per object, one bit: its count exceeds the references from tracked
     * objects (referenced from outside: C code, a thread's frame, a type
     * the graph cannot traverse), or says nothing. The cycle collector's
     * update_refs and subtract_refs, done once the edges are known; 4
     * bytes an object less for the rest of the analysis. */
    uint64_t *external;
    const char *count_doubt; /* NULL, or why the counts do not add up */
    vec flags;              /* uint8_t: AIO_HO_* */
    vec type;               /* uint32_t: index in types */
    vec edge_start; /* uint32_t, objs.len + 1: object i's edges are edges[start[i] .. start[i+1]) */
    vec edges;      /* uint32_t: object index | AIO_EDGE_* */
    vec extra_roots; /* uint32_t: what threads' frames and the interpreter hold (counts miss
                        3.14's borrowed stack references) */
    vec tasks;       /* aio_heap_task, parallel to the model's tasks */
    vec chain;       /* uint32_t object indexes of the tasks' coroutines */
    vec types;       /* aio_heap_type */
    u64map pages;    /* 1 + address >> 12 -> first object index << 32 | objects starting there */
    uint64_t opaque; /* objects whose references could not be read */
} aio_heap;

/* The object with this address, AIO_HEAP_NONE when it is not in the graph. */
uint32_t aio_heap_find(const aio_heap *h, uint64_t addr);
void aio_heap_free(aio_heap *h);

typedef struct aio_model {
    aio_target target;
    vec threads;   /* aio_thread */
    vec tasks;     /* aio_task */
    vec loops;     /* aio_loop */
    vec resources; /* aio_resource */
    const char *tasks_found_by; /* how tasks were found, for the report */
    aio_heap heap;              /* the object graph, when reachability was asked for */
    size_t other_threads;       /* Python threads that run no loop and could call into one */
    bool tasks_truncated;       /* a registry was damaged or a limit hit */
    vec warnings;  /* char*, one sentence each */
    vec chains;    /* uint64_t: every task's chain (aio_task.chain_at) */
    /* Function and file names, once per code object: a million tasks share
     * a handful of coroutines. */
    u64map name_index; /* code address -> its aio_name, in the arena */
    /* task id -> index in tasks, kept from the build for aio_find_task;
     * empty in a model built by hand (the lookup then scans). */
    u64map task_index;
    /* Type names, once each (aio_intern): a million tasks share a few. */
    u64map string_index; /* hash of the text, probed -> 1 + index in strings */
    vec strings;         /* char * */
    /* Task names (aio_text) and each task's settled vectors (its frames,
     * chain and awaits): one allocation each cost twice their bytes at a
     * million tasks. */
    util_arena arena;
} aio_model;

/* Points f's names at the pool's copy for this code object; false when out
 * of memory. */
bool aio_frame_names(aio_model *m, aio_frame *f, uint64_t code, const char *function,
                     const char *file, int nlocalsplus);
/* The model's own copy of s, one per distinct text; NULL when out of memory. */
const char *aio_intern(aio_model *m, const char *s);
/* The model's copy of s, kept with its other texts until aio_model_free
 * (not shared: for a task's own name); NULL when out of memory. */
char *aio_text(aio_model *m, const char *s);
/* Puts the model's tasks in the order every view shows: pending first, then
 * by loop, then by address. ERR_NOMEM leaves them as they were. */
err_t aio_sort_tasks(aio_model *m);

/* What to build; stacks alone does not need the tasks. */
typedef struct aio_options {
    bool tasks;
    bool running_only; /* only the tasks threads are running (for stacks) */
    bool all_objects;  /* also scan the GC lists for tasks no registry holds */
    uint64_t locals_of; /* read the frame locals of this task (snarl task ID) */
    bool reachability;  /* read the object graph (model.heap) for the reachability passes */
    bool health;        /* holders, resolvers and loop health, for the diagnoses */
} aio_options;

err_t aio_build(py_target *t, const aio_options *opt, aio_model *model);
void aio_model_free(aio_model *model);
err_t aio_warn(aio_model *model, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Lookup over a built model; NULL when absent. */
const aio_task *aio_find_task(const aio_model *m, uint64_t id);


#endif
