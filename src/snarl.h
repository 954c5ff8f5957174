/* snarl's public engine API: the only header the front ends (CLI, the Python
 * extension behind the gdb and lldb commands) include. Opaque session, a
 * host-callback struct through which a debugger supplies memory and mappings,
 * open / run / close, and an error accessor. The engine never prints, never
 * exits and never aborts; output goes to the caller's sink. */
#ifndef SNARL_H
#define SNARL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SNARL_BUILDING)
#define SNARL_API __attribute__((visibility("default")))
#else
#define SNARL_API
#endif

#define SNARL_SCHEMA "snarl/1"

typedef struct snarl_session snarl_session;

/* Where rendered bytes go; return non-zero to stop rendering. */
typedef int (*snarl_sink)(void *ctx, const char *data, size_t len);

typedef struct snarl_mapping {
    uint64_t start;  /* first address of the mapping */
    uint64_t end;    /* one past its last address */
    uint64_t offset; /* file offset mapped at start */
    const char *path;
} snarl_mapping;

typedef int (*snarl_mapping_cb)(void *cb_ctx, const snarl_mapping *m);

/* A debugger as the source of memory and mappings. read and mappings are
 * required; the rest may be NULL. Callbacks return 0 on success. */
typedef struct snarl_host {
    void *ctx;
    int (*read)(void *ctx, uint64_t addr, size_t len, void *dst);
    int (*mappings)(void *ctx, snarl_mapping_cb cb, void *cb_ctx);
    /* Calls cb once per thread id (LWP) of the target, if known. */
    int (*threads)(void *ctx, int (*cb)(void *cb_ctx, int64_t tid), void *cb_ctx);
    int pid;                /* 0 when unknown */
    int is_core;            /* the debugger's target is a core file */
    const char *executable; /* the debugger's executable, or NULL */
    /* A live target that the debugger keeps stopped while the engine reads
     * (every thread, as in gdb's all-stop mode): reported as frozen. */
    int stopped;
    /* Bytes the engine asks for in one read when it fills its cache (0: one
     * page). Larger blocks pay off when each read has a fixed cost (a call
     * into the debugger's Python, a remote round trip); a block that cannot
     * be read whole is read again page by page. */
    size_t block_size;
    /* A live target that runs on this machine (not through gdbserver or
     * another machine's debug server): pid is a PID here, so the engine can
     * tell a target that died under the read from one that cannot be read. */
    int local;
} snarl_host;

typedef enum snarl_format {
    SNARL_FORMAT_TEXT = 0,
    SNARL_FORMAT_JSON = 1,
    SNARL_FORMAT_DOT = 2,
    SNARL_FORMAT_MERMAID = 3,
} snarl_format;

typedef struct snarl_options {
    const char *sysroot; /* where a core's files live, as gdb's `set sysroot` */
    int no_freeze;       /* live targets: read without stopping the threads */
} snarl_options;

typedef struct snarl_request {
    const char *command; /* "check", "stacks", "tasks", "tree", "graph", "task" */
    snarl_format format;
    const char *task_id; /* for "task": the task's address, "0x..." */
    int all;             /* list every item instead of grouping identical ones */
    int all_objects;     /* also look for tasks on the GC heap */
    /* check: the diagnosis kinds that make the status SNARL_STATUS_FOUND,
     * as names separated by commas ("await-cycle,lock-cycle"); NULL: all. */
    const char *fail_on;
} snarl_request;

/* Exit-status classes shared by every front end. */
enum {
    SNARL_STATUS_CLEAN = 0, /* analysed, nothing found */
    SNARL_STATUS_FOUND = 1, /* analysed, something reported */
    SNARL_STATUS_ERROR = 2, /* could not analyse */
};

/* NULL only when out of memory. opt may be NULL. */
SNARL_API snarl_session *snarl_open(const snarl_options *opt);
SNARL_API void snarl_close(snarl_session *s);

/* Attach one target to a fresh session. Each returns 0 or an error code;
 * snarl_error() then has the sentence and snarl_hint() what to try. */
SNARL_API int snarl_attach_pid(snarl_session *s, int pid);
SNARL_API int snarl_attach_core(snarl_session *s, const char *core, const char *executable);
SNARL_API int snarl_attach_host(snarl_session *s, const snarl_host *host);

/* Reads the target (frozen for the duration when live, unless no_freeze),
 * renders the requested view into sink and returns a SNARL_STATUS_*. */
SNARL_API int snarl_run(snarl_session *s, const snarl_request *req, snarl_sink sink,
                        void *sink_ctx);

/* Where the last snarl_run spent its time, for benchmarks and --timing. A
 * live target is stopped only while its memory is read and the model built
 * (frozen_ms, summed over the reads a run makes); the analysis and the
 * rendering run after it is resumed. */
typedef struct snarl_timing {
    double frozen_ms;  /* the target stopped (0 for cores, --no-freeze, a debugger's) */
    double read_ms;    /* reading memory and building the model */
    double analyse_ms; /* the diagnoses, a confirming second read included */
    double render_ms;
    unsigned long long reads;         /* reads asked of the memory layer */
    unsigned long long backend_reads; /* of which the backend served (cache misses) */
} snarl_timing;

SNARL_API void snarl_last_timing(const snarl_session *s, snarl_timing *out);

/* What the last snarl_run read and found, in a few numbers: for a front end
 * that lists many targets one line each (`snarl check --all`). */
typedef struct snarl_summary {
    char python[32];   /* "3.12.3"; empty before a target is attached */
    size_t tasks;      /* tasks read, in any state */
    size_t pending;    /* of which pending */
    size_t loops;      /* event loops found */
    size_t threads;    /* Python threads */
    size_t findings;   /* diagnoses reported (check, tree, graph) */
    char kinds[256];   /* their kinds, each once, comma-separated: "lock-cycle,all-asleep" */
    char verdict[256]; /* check's one-line verdict; empty for other commands */
} snarl_summary;

SNARL_API void snarl_last_summary(const snarl_session *s, snarl_summary *out);

SNARL_API const char *snarl_error(const snarl_session *s);
SNARL_API const char *snarl_hint(const snarl_session *s);
SNARL_API int snarl_error_code(const snarl_session *s);
/* The error's class as a stable name ("NO_FILE", "USAGE", "NOT_FOUND", ...),
 * for a front end that words its own hint; "OK" when there is none. */
SNARL_API const char *snarl_error_name(const snarl_session *s);

/* Whether the process PID of this machine has exited or is exiting: no such
 * PID, or no thread of it left that is not a zombie, not exiting and not
 * bound to die (SIGKILL pending). The engine's own test for a target that
 * died under the read, for front ends that read /proc themselves. */
SNARL_API int snarl_pid_exited(int pid);

/* Writes n bytes of s into dst (cap bytes, NUL-terminated) escaped as the
 * engine escapes every byte it prints from a target: valid UTF-8, no
 * control characters (\xNN for them and for bytes that are not UTF-8, as
 * Python's backslashreplace), whole escapes only. Returns the length
 * written. For what a front end prints itself: a command line read from
 * /proc, an argument quoted in a usage error. */
SNARL_API size_t snarl_escape(char *dst, size_t cap, const char *s, size_t n);

/* Async-signal-safe: resume every thread this process froze. For the CLI's
 * SIGINT/SIGTERM handlers; the kernel also resumes them if we die. */
SNARL_API void snarl_emergency_thaw(void);

#ifdef __cplusplus
}
#endif
#endif
