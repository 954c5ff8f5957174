/* The model the analysis and output layers work on: plain C structs built
 * once from the target; after it is built no more memory is read. This first
 * part holds the target and its threads with their Python stacks; asyncio
 * loops, tasks and resources join it later. */
#ifndef SNARL_AIO_H
#define SNARL_AIO_H

#include <stdbool.h>
#include <stdint.h>

#include "../py/py.h"

typedef struct aio_frame {
    char *function; /* qualname; NULL when the frame was unreadable */
    char *file;
    int line; /* -1 when unknown */
    uint64_t addr;
} aio_frame;

typedef struct aio_thread {
    int64_t native_id;
    uint64_t tstate;
    int64_t interp_id;
    char name[64];
    bool holds_gil;
    vec frames;     /* aio_frame, innermost first */
    bool truncated; /* the frame walk stopped early (limit or damage) */
    bool recovered; /* part of the stack was rebuilt from the data stack */
} aio_thread;

typedef struct aio_target {
    const char *kind; /* "live" or "core" */
    int pid;
    char python[32];
    char *executable;
    bool frozen;
} aio_target;

typedef struct aio_model {
    aio_target target;
    vec threads;  /* aio_thread */
    vec warnings; /* char*, one sentence each */
} aio_model;

err_t aio_build(py_target *t, aio_model *model);
void aio_model_free(aio_model *model);
err_t aio_warn(aio_model *model, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
