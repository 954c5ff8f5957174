/* `stacks`: every thread's Python stack, innermost frame first, as text
 * blocks (one per thread) or as the snarl/1 JSON document. */
#include "out.h"

#include <inttypes.h>
#include <string.h>

static void out_stacks_json(out_writer *w, const aio_model *m) {
    out_puts(w, "{\"schema\":\"" SNARL_SCHEMA "\",");
    out_json_target(w, m);
    out_puts(w, ",");
    out_json_threads(w, m);
    out_puts(w, ",");
    out_json_warnings(w, m);
    out_puts(w, "}\n");
}

/* Runs of identical frames longer than this are printed once. */
#define OUT_REPEAT_COLLAPSE 4

static bool out_same_frame(const aio_frame *a, const aio_frame *b) {
    return a->name && b->name && a->line == b->line && aio_frame_task(a) == aio_frame_task(b) &&
           strcmp(a->name->function, b->name->function) == 0 &&
           strcmp(a->name->file, b->name->file) == 0;
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
    if (!aio_frame_function(f)) {
        out_printf(w, "    <unreadable at 0x%" PRIx64 ">\n", f->addr);
    } else if (f->line >= 0) {
        out_printf(w, "    %s (%s:%d)\n", aio_frame_function(f), aio_frame_file(f), f->line);
    } else {
        out_printf(w, "    %s (%s)\n", aio_frame_function(f), aio_frame_file(f));
    }
}

/* The line that opens a run of frames belonging to the running task, so the
 * reader sees where the loop's frames end and the task's coroutines begin. */
static void out_task_splice(out_writer *w, const aio_model *m, uint64_t task) {
    /* A linear search: a thread has one running task (two with a nested loop). */
    const aio_task *t = NULL;
    for (size_t i = 0; i < m->tasks.len && !t; i++) {
        if (VEC_AT(&m->tasks, aio_task, i)->id == task) {
            t = VEC_AT(&m->tasks, aio_task, i);
        }
    }
    sbuf b;
    sbuf_init(&b);
    if (t) {
        out_task_ref_id(&b, t);
    } else {
        sbuf_printf(&b, "task 0x%" PRIx64, task);
    }
    if (b.oom) {
        w->failed = true;
    }
    out_printf(w, "    ── %s ──\n", sbuf_str(&b));
    sbuf_free(&b);
}

const aio_thread *out_find_thread(const aio_model *m, int64_t native_id) {
    for (size_t i = 0; i < m->threads.len; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        if (th->native_id == native_id) {
            return th;
        }
    }
    return NULL;
}

void out_thread_waits(sbuf *b, const aio_thread *th) {
    sbuf_printf(b, "waits for %s 0x%" PRIx64, out_kind_word(th->waits_kind), th->waits_on);
    if (th->waits_type[0] && th->waits_kind != AIO_KIND_CFUTURE) {
        sbuf_adds(b, " (");
        out_clean(b, th->waits_type);
        sbuf_adds(b, ")");
    }
    sbuf_adds(b, th->waits_timeout ? ", with a timeout" : ", no timeout");
}

void out_thread_work(sbuf *b, const aio_thread *th) {
    sbuf_printf(b, "work item 0x%" PRIx64 ": ", th->work_item);
    out_clean(b, th->work_fn[0] ? th->work_fn : "?");
    sbuf_printf(b, "(), completes concurrent future 0x%" PRIx64, th->work_future);
}

/* A line under a thread's header: what it waits for, or the work item it
 * runs. */
static void out_thread_line(out_writer *w, const aio_thread *th,
                            void (*fn)(sbuf *, const aio_thread *), bool splice) {
    sbuf b;
    sbuf_init(&b);
    fn(&b, th);
    if (b.oom) {
        w->failed = true;
    }
    if (splice) {
        out_printf(w, "    ── %s ──\n", sbuf_str(&b));
    } else {
        out_printf(w, "    (%s)\n", sbuf_str(&b));
    }
    sbuf_free(&b);
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
        if (th->waits_kind != AIO_KIND_NONE) {
            out_thread_line(w, th, out_thread_waits, false);
        }
        for (size_t k = 0; k < th->frames.len; k++) {
            const aio_frame *f = VEC_AT(&th->frames, aio_frame, k);
            if (k == 0 && th->work_item) {
                /* As the loop thread's running task: the work item's own
                 * frames are those above _WorkItem.run. */
                out_thread_line(w, th, out_thread_work, true);
            }
            uint64_t task = aio_frame_task(f);
            if (task && (k == 0 || aio_frame_task(VEC_AT(&th->frames, aio_frame, k - 1)) != task)) {
                out_task_splice(w, m, task);
            }
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
