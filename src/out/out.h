/* The output layer: the model to bytes through the front end's sink. Text
 * for people, JSON (schema snarl/1) for programs. Knows nothing of where the
 * bytes go. */
#ifndef SNARL_OUT_H
#define SNARL_OUT_H

#include "../aio/aio.h"
#include "../snarl.h"

/* Bytes buffered before they are handed to the sink. */
#define OUT_FLUSH_AT 16384

typedef struct out_writer {
    snarl_sink sink;
    void *ctx;
    sbuf buf;
    bool failed; /* the sink asked to stop, or memory ran out */
} out_writer;

void out_init(out_writer *w, snarl_sink sink, void *ctx);
/* Flushes and releases; returns false if any output was lost. */
bool out_finish(out_writer *w);
void out_puts(out_writer *w, const char *s);
void out_printf(out_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal (quoted, escaped); NULL writes null. */
void out_json_str(out_writer *w, const char *s);

void out_stacks(out_writer *w, const aio_model *m, snarl_format fmt);

#endif
