/* Error codes and the per-session error record. One list generates the codes,
 * their names and their default sentences (as elfutils does); details such as
 * errno, the address and a short context live on the session. */
#ifndef SNARL_BASE_ERR_H
#define SNARL_BASE_ERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "../snarl.h"

/* X(name, sentence, hint) */
#define ERR_LIST(X)                                                                                \
    X(OK, "no error", "")                                                                          \
    X(USAGE, "bad usage", "see 'snarl --help'")                                                    \
    X(NOMEM, "out of memory", "")                                                                  \
    X(NO_PROCESS, "no such process", "check the PID; the process may have exited")                 \
    X(PERM, "permission denied",                                                                   \
      "run as the same user with ptrace allowed (kernel.yama.ptrace_scope=0), or as root / "       \
      "with CAP_SYS_PTRACE")                                                                       \
    X(BUSY, "the process is already traced by another tracer",                                     \
      "detach the other debugger, or use --no-freeze")                                             \
    X(GONE, "the target exited while it was being read", "")                                       \
    X(NOT_PYTHON, "not a Python process or core", "snarl reads CPython 3.11 to 3.15 programs")     \
    X(UNSUPPORTED, "unsupported Python version", "snarl supports CPython 3.11 to 3.15")            \
    X(CORE, "damaged or truncated core file", "the core may be incomplete; re-create it")          \
    X(NO_FILE, "a file the target maps was not found",                                             \
      "pass the executable after the core, or --sysroot DIR where the target's files live")        \
    X(IO, "I/O error", "")                                                                         \
    X(READ, "memory not readable", "")                                                             \
    X(CORRUPT, "inconsistent data in the target", "")                                              \
    X(LIMIT, "a walk hit its limit", "")                                                           \
    X(NOT_FOUND, "not found", "")

typedef enum {
#define ERR_ENUM(name, sentence, hint) ERR_##name,
    ERR_LIST(ERR_ENUM)
#undef ERR_ENUM
        ERR_COUNT
} err_t;

/* Longest message kept for the front end: one sentence plus its detail. */
#define ERR_MSG_MAX 512
/* Context frames ("thread 1234", "task 0x...") pushed at thread, task and
 * coroutine boundaries; deeper nesting is not useful in a one-line message. */
#define ERR_CTX_MAX 4
#define ERR_CTX_LEN 64

typedef struct err_record {
    err_t code;
    int sys_errno;
    char msg[ERR_MSG_MAX];
    const char *hint;
    char ctx[ERR_CTX_MAX][ERR_CTX_LEN];
    int nctx;
} err_record;

const char *err_sentence(err_t code);
const char *err_hint(err_t code);
const char *err_name(err_t code);

/* Records code and a formatted detail on rec; returns code so callers can
 * write `return err_set(...)`. */
err_t err_set(err_record *rec, err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
err_t err_setv(err_record *rec, err_t code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void err_clear(err_record *rec);
void err_push(err_record *rec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void err_pop(err_record *rec);

#endif
