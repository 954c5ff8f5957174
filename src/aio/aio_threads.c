/* Builds the thread part of the model: every Python thread of every
 * interpreter with its frames, innermost first. A damaged frame ends that
 * thread's stack with an unreadable marker; the other threads still stand. */
#include "aio_int.h"

#include <stdarg.h>
#include <stdio.h>

err_t aio_warn(aio_model *model, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **slot = vec_push(&model->warnings);
    if (!slot) {
        return ERR_NOMEM;
    }
    /* Warnings name paths and objects of the target: escaped as errors are. */
    sbuf b;
    sbuf_init(&b);
    util_escape(&b, buf, strlen(buf), 0);
    *slot = b.oom ? NULL : util_strdup(sbuf_str(&b));
    sbuf_free(&b);
    return *slot ? ERR_OK : ERR_NOMEM;
}

static err_t aio_push_frame(aio_model *m, aio_thread *th, const py_frame *f) {
    aio_frame *af = vec_push(&th->frames);
    if (!af) {
        return ERR_NOMEM;
    }
    af->addr = f->addr;
    af->line = f->line;
    af->depth = f->is_python ? f->stack_depth : -1;
    if (f->is_python &&
        !aio_frame_names(m, af, f->code, f->qualname, f->filename, f->nlocalsplus)) {
        return ERR_NOMEM;
    }
    return ERR_OK;
}

/* Walks from frame outwards; *met is set when the walk passes through outer
 * (see aio_walk_thread). */
static err_t aio_walk_frames(py_target *t, aio_model *m, aio_thread *th, uint64_t frame,
                             uint64_t base, uint64_t outer, bool *met) {
    u64set seen;
    u64set_init(&seen);
    err_t e = ERR_OK;
    uint64_t anchor = 0; /* the oldest data-stack frame walked so far */
    for (int depth = 0; frame; depth++) {
        *met = *met || frame == outer;
        if (depth == PY_FRAMES_MAX || u64set_add(&seen, frame) != 1) {
            th->truncated = true;
            break;
        }
        py_frame f;
        err_t fe = py_frame_read(t, frame, &f);
        /* No real frame has neither code nor caller: this one was lost (e.g.
         * a core that zero-filled a thread's C stack, where 3.12+ keep their
         * entry frames). */
        if (fe == ERR_OK && !f.raw_code && !f.previous) {
            fe = ERR_READ;
        }
        if (fe != ERR_OK) {
            /* The caller is the data-stack frame just below the oldest one
             * we saw; if none fits, mark the damage and stop. */
            uint64_t below;
            if (anchor && anchor == base) {
                break; /* the lost frame was the thread's own entry frame */
            }
            if (anchor && py_frame_find_below(t, anchor, &below) == ERR_OK &&
                !u64set_has(&seen, below)) {
                th->recovered = true;
                frame = below;
                continue;
            }
            f.is_python = false;
            f.addr = frame;
            f.line = -1;
            e = aio_push_frame(m, th, &f);
            th->truncated = true;
            break;
        }
        if (f.is_python && f.owner == PY_FRAME_OWNED_BY_THREAD) {
            anchor = frame;
        }
        if (f.is_python && (e = aio_push_frame(m, th, &f)) != ERR_OK) {
            break;
        }
        frame = f.previous;
    }
    u64set_free(&seen);
    return e;
}

/* 3.11 and 3.12 link the first frame of each evaluation loop to the frame
 * that entered the loop (the current frame of the C frame below), and
 * CPython asserts the link when the loop returns. A thread caught entering
 * or leaving a loop, between publishing the loop's C frame and linking its
 * first frame (a frozen process stops it there about once in a hundred
 * reads when C calls Python in a tight loop), has a current frame that is
 * still stack garbage from an earlier call: a walk from it that never
 * passes through the entering frame read that garbage, and at that instant
 * the thread's stack is the entering frame's. */
static err_t aio_walk_thread(py_target *t, aio_model *m, aio_thread *th, const py_thread *pt) {
    bool met = false;
    err_t e = aio_walk_frames(t, m, th, pt->frame, pt->base_frame, pt->outer_frame, &met);
    if (e != ERR_OK || !pt->outer_frame || met) {
        return e;
    }
    th->frames.len = 0;
    th->truncated = th->recovered = false;
    return aio_walk_frames(t, m, th, pt->outer_frame, pt->base_frame, 0, &met);
}

err_t aio_build_threads(py_target *t, aio_model *model) {
    py_threads_result r;
    err_t e = py_threads(t, &r);
    if (e != ERR_OK) {
        return e;
    }
    if (r.truncated) {
        aio_warn(model, "the thread list is damaged or too long; some threads may be missing");
    }
    for (size_t i = 0; i < r.threads.len && e == ERR_OK; i++) {
        const py_thread *pt = VEC_AT(&r.threads, py_thread, i);
        aio_thread *th = vec_push(&model->threads);
        if (!th) {
            e = ERR_NOMEM;
            break;
        }
        vec_init(&th->frames, sizeof(aio_frame));
        th->native_id = pt->native_id;
        th->tstate = pt->addr;
        th->interp_id = pt->interp_id;
        th->holds_gil = pt->holds_gil;
        snprintf(th->name, sizeof th->name, "%s", pt->name);
        th->ident = pt->thread_id;
        e = aio_walk_thread(t, model, th, pt);
        if (e == ERR_OK) {
            aio_thread_waits(t, th);
        }
    }
    py_threads_free(&r);
    return e == ERR_NOMEM ? err_set(t->err, ERR_NOMEM, NULL) : e;
}
