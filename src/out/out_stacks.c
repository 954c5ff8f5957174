/* `stacks`: every thread's Python stack, innermost frame first, as text
 * blocks (one per thread) or as the snarl/1 JSON document. */
#include "out.h"

#include <inttypes.h>
#include <string.h>

static void out_target_json(out_writer *w, const aio_model *m) {
    const aio_target *t = &m->target;
    out_printf(w, "\"target\":{\"kind\":");
    out_json_str(w, t->kind);
    out_printf(w, ",\"pid\":%d,\"python\":", t->pid);
    out_json_str(w, t->python);
    out_puts(w, ",\"executable\":");
    out_json_str(w, t->executable);
    out_printf(w, ",\"frozen\":%s}", t->frozen ? "true" : "false");
}

static void out_warnings_json(out_writer *w, const aio_model *m) {
    out_puts(w, ",\"warnings\":[");
    for (size_t i = 0; i < m->warnings.len; i++) {
        out_puts(w, i ? "," : "");
        out_json_str(w, *VEC_AT(&m->warnings, char *, i));
    }
    out_puts(w, "]");
}

static void out_stacks_json(out_writer *w, const aio_model *m) {
    out_puts(w, "{\"schema\":\"" SNARL_SCHEMA "\",");
    out_target_json(w, m);
    out_puts(w, ",\"threads\":[");
    for (size_t i = 0; i < m->threads.len; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        out_printf(w, "%s{\"native_id\":%" PRId64 ",\"name\":", i ? "," : "", th->native_id);
        out_json_str(w, th->name[0] ? th->name : NULL);
        out_printf(w, ",\"holds_gil\":%s,\"truncated\":%s,\"recovered\":%s,\"stack\":[",
                   th->holds_gil ? "true" : "false", th->truncated ? "true" : "false",
                   th->recovered ? "true" : "false");
        for (size_t k = 0; k < th->frames.len; k++) {
            const aio_frame *f = VEC_AT(&th->frames, aio_frame, k);
            out_puts(w, k ? "," : "");
            if (!f->function) {
                out_printf(w,
                           "{\"function\":null,\"file\":null,\"line\":null,"
                           "\"error\":\"unreadable at 0x%" PRIx64 "\"}",
                           f->addr);
                continue;
            }
            out_puts(w, "{\"function\":");
            out_json_str(w, f->function);
            out_puts(w, ",\"file\":");
            out_json_str(w, f->file);
            if (f->line >= 0) {
                out_printf(w, ",\"line\":%d}", f->line);
            } else {
                out_puts(w, ",\"line\":null}");
            }
        }
        out_puts(w, "]}");
    }
    out_puts(w, "]");
    out_warnings_json(w, m);
    out_puts(w, "}\n");
}

/* Runs of identical frames longer than this are printed once. */
#define OUT_REPEAT_COLLAPSE 4

static bool out_same_frame(const aio_frame *a, const aio_frame *b) {
    return a->function && b->function && a->line == b->line &&
           strcmp(a->function, b->function) == 0 && strcmp(a->file, b->file) == 0;
}

/* How many frames from k on equal frame k. */
static size_t out_repeats(const aio_thread *th, size_t k) {
    const aio_frame *f = VEC_AT(&th->frames, aio_frame, k);
    size_t n = 1;
    while (k + n < th->frames.len && out_same_frame(f, VEC_AT(&th->frames, aio_frame, k + n))) {
        n++;
    }
    return n;
}

static void out_frame_text(out_writer *w, const aio_frame *f) {
    if (!f->function) {
        out_printf(w, "    <unreadable at 0x%" PRIx64 ">\n", f->addr);
    } else if (f->line >= 0) {
        out_printf(w, "    %s (%s:%d)\n", f->function, f->file, f->line);
    } else {
        out_printf(w, "    %s (%s)\n", f->function, f->file);
    }
}

static void out_stacks_text(out_writer *w, const aio_model *m) {
    const aio_target *t = &m->target;
    out_printf(w, "Python %s, %s %d%s\n", t->python,
               t->kind[0] == 'l' ? "process" : "core of process", t->pid,
               t->kind[0] == 'l' && !t->frozen ? " (read without freezing)" : "");
    for (size_t i = 0; i < m->warnings.len; i++) {
        out_printf(w, "warning: %s\n", *VEC_AT(&m->warnings, char *, i));
    }
    for (size_t i = 0; i < m->threads.len; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        out_printf(w, "\nThread %" PRId64, th->native_id);
        if (th->name[0]) {
            out_printf(w, " \"%s\"", th->name);
        }
        out_printf(w, " (%s)\n", th->holds_gil ? "holds the GIL" : "idle");
        if (th->frames.len == 0) {
            out_puts(w, "    (no Python frames)\n");
        }
        for (size_t k = 0; k < th->frames.len; k++) {
            const aio_frame *f = VEC_AT(&th->frames, aio_frame, k);
            size_t same = out_repeats(th, k);
            if (same >= OUT_REPEAT_COLLAPSE) {
                /* As Python's tracebacks do: deep recursion reads better
                 * collapsed; JSON keeps every frame. */
                out_frame_text(w, f);
                out_printf(w, "    [previous frame repeated %zu more times]\n", same - 1);
                k += same - 1;
                continue;
            }
            out_frame_text(w, f);
        }
        if (th->truncated) {
            out_puts(w, "    ... (stack cut short: damaged or too deep)\n");
        }
        if (th->recovered) {
            out_puts(w, "    (outer frames rebuilt from the thread's data stack: the core lacks "
                        "its C stack; a generator frame between them may be missing)\n");
        }
    }
}

void out_stacks(out_writer *w, const aio_model *m, snarl_format fmt) {
    if (fmt == SNARL_FORMAT_JSON) {
        out_stacks_json(w, m);
    } else {
        out_stacks_text(w, m);
    }
}
