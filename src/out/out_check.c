/* `check`: the diagnoses, jstack-style. First "Found N asyncio deadlocks"
 * with each cycle and the stacks of its tasks, then the other findings,
 * then a one-line verdict; and the same as JSON. */
#include "out.h"

#include <inttypes.h>
#include <string.h>

/* Frames of a task shown under a finding; `snarl task ID` shows them all. */
#define OUT_CHECK_FRAMES 8
/* Tasks listed under one finding (all-asleep can name thousands). */
#define OUT_CHECK_TASKS 10

static size_t out_deadlocks(const ana_result *diag) {
    size_t n = 0;
    for (size_t i = 0; i < diag->diagnoses.len; i++) {
        n += ana_kind_is_deadlock(VEC_AT(&diag->diagnoses, ana_diagnosis, i)->kind);
    }
    return n;
}

static size_t out_count(const ana_result *diag, ana_kind kind) {
    size_t n = 0;
    for (size_t i = 0; i < diag->diagnoses.len; i++) {
        n += VEC_AT(&diag->diagnoses, ana_diagnosis, i)->kind == kind;
    }
    return n;
}

/* The deadlocks of tasks ("Found N asyncio deadlocks"); threads-only
 * lock cycles get jstack's own block. */
static bool out_is_asyncio_deadlock(ana_kind k) {
    return ana_kind_is_deadlock(k) && k != ANA_THREAD_LOCK_CYCLE;
}

static void out_thread_title(out_writer *w, const aio_thread *th, int64_t id) {
    if (th && th->name[0]) {
        out_printf(w, "\"%s\" (native id %" PRId64 ")", th->name, id);
    } else {
        out_printf(w, "thread %" PRId64, id);
    }
}

static void out_check_thread_frames(out_writer *w, const aio_thread *th) {
    for (size_t k = 0; k < th->frames.len && k < OUT_CHECK_FRAMES; k++) {
        const aio_frame *f = VEC_AT(&th->frames, aio_frame, k);
        if (!aio_frame_function(f)) {
            out_printf(w, "        <unreadable at 0x%" PRIx64 ">\n", f->addr);
        } else {
            out_printf(w, "        %s (%s:%d)\n", aio_frame_function(f), aio_frame_file(f),
                       f->line);
        }
    }
    if (th->frames.len > OUT_CHECK_FRAMES) {
        out_printf(w, "        ... %zu more frames (snarl stacks)\n",
                   (size_t)th->frames.len - OUT_CHECK_FRAMES);
    }
}

/* A thread under a finding: what it waits for, its work item, its stack. */
static void out_check_thread(out_writer *w, const aio_model *m, int64_t id) {
    const aio_thread *th = out_find_thread(m, id);
    out_puts(w, "    ");
    out_thread_title(w, th, id);
    out_puts(w, "\n");
    if (!th) {
        return;
    }
    sbuf b;
    sbuf_init(&b);
    if (th->work_item) {
        out_thread_work(&b, th);
        out_printf(w, "        ── %s ──\n", sbuf_str(&b));
    }
    if (b.oom) {
        w->failed = true;
    }
    sbuf_free(&b);
    out_check_thread_frames(w, th);
}

/* jstack's "Found one Java-level deadlock": each thread, the lock it
 * waits for and who holds it; then their stacks. */
static void out_check_thread_cycle(out_writer *w, const aio_model *m, const ana_diagnosis *d) {
    out_puts(w, "Found one Python-level deadlock:\n=============================\n");
    for (size_t k = 0; k < d->threads.len; k++) {
        int64_t id = (int64_t)*VEC_AT(&d->threads, uint64_t, k);
        const aio_thread *th = out_find_thread(m, id);
        out_thread_title(w, th, id);
        out_puts(w, ":\n");
        if (!th || th->waits_kind == AIO_KIND_NONE) {
            continue;
        }
        const aio_resource *r = NULL;
        for (size_t j = 0; j < m->resources.len && !r; j++) {
            const aio_resource *x = VEC_AT(&m->resources, aio_resource, j);
            r = x->id == th->waits_on ? x : NULL;
        }
        bool lock = th->waits_kind == AIO_KIND_THREAD_LOCK;
        if (lock) {
            out_printf(w, "  waiting to lock %s 0x%" PRIx64 ",\n", th->waits_type, th->waits_on);
        } else {
            out_printf(w, "  waiting for %s 0x%" PRIx64 ",\n", out_kind_word(th->waits_kind),
                       th->waits_on);
        }
        for (size_t h = 0; r && h < r->thread_holders.len; h++) {
            int64_t hid = (int64_t)*VEC_AT(&r->thread_holders, uint64_t, h);
            out_puts(w, h ? "  and by " : lock ? "  which is held by " : "  which only ");
            out_thread_title(w, out_find_thread(m, hid), hid);
            out_puts(w, lock ? "\n" : " can complete\n");
        }
    }
    out_puts(w, "\nPython stack information for the threads listed above:\n"
                "===================================================\n");
    for (size_t k = 0; k < d->threads.len; k++) {
        int64_t id = (int64_t)*VEC_AT(&d->threads, uint64_t, k);
        const aio_thread *th = out_find_thread(m, id);
        out_thread_title(w, th, id);
        out_puts(w, ":\n");
        if (th) {
            out_check_thread_frames(w, th);
        }
    }
    out_printf(w, "\n  %s\n\n", d->summary);
}

void out_verdict(sbuf *b, const aio_model *m, const ana_result *diag) {
    size_t dead = out_deadlocks(diag), stuck = out_count(diag, ANA_STUCK);
    size_t other = diag->diagnoses.len - dead - stuck;
    size_t pending = 0;
    for (size_t i = 0; i < m->tasks.len; i++) {
        pending += VEC_AT(&m->tasks, aio_task, i)->state == AIO_STATE_PENDING;
    }
    if (!diag->diagnoses.len) {
        sbuf_printf(b, "No problem found: %zu pending task%s in %zu loop%s.", pending,
                    pending == 1 ? "" : "s", (size_t)m->loops.len, m->loops.len == 1 ? "" : "s");
        return;
    }
    sbuf_adds(b, "Stuck: ");
    if (stuck) {
        sbuf_printf(b, "%zu group%s of tasks stuck for good", stuck, stuck == 1 ? "" : "s");
    }
    if (dead) {
        sbuf_printf(b, "%s%zu deadlock%s", stuck ? (other ? ", " : " and ") : "", dead,
                    dead == 1 ? "" : "s");
    }
    if (other) {
        sbuf_printf(b, "%s%zu other finding%s", dead || stuck ? " and " : "", other,
                    other == 1 ? "" : "s");
    }
    sbuf_printf(b, " among %zu pending task%s.", pending, pending == 1 ? "" : "s");
}

static void out_check_task(out_writer *w, const aio_model *m, uint64_t id) {
    const aio_task *t = aio_find_task(m, id);
    if (!t) {
        out_printf(w, "    task 0x%" PRIx64 "\n", id);
        return;
    }
    sbuf req;
    sbuf_init(&req);
    out_task_request(&req, t);
    out_printf(w, "    task '%s'%s (0x%" PRIx64 ")\n", t->name ? t->name : "", sbuf_str(&req),
               t->id);
    sbuf_free(&req);
    for (size_t k = 0; k < t->frames.len && k < OUT_CHECK_FRAMES; k++) {
        const aio_frame *f = VEC_AT(&t->frames, aio_frame, k);
        if (!aio_frame_function(f)) {
            out_printf(w, "        <unreadable at 0x%" PRIx64 ">\n", f->addr);
        } else {
            out_printf(w, "        %s (%s:%d)\n", aio_frame_function(f), aio_frame_file(f),
                       f->line);
        }
    }
    if (t->frames.len > OUT_CHECK_FRAMES) {
        out_printf(w, "        ... %zu more frames (snarl task 0x%" PRIx64 ")\n",
                   (size_t)t->frames.len - OUT_CHECK_FRAMES, t->id);
    }
}

static void out_check_one(out_writer *w, const aio_model *m, const ana_diagnosis *d) {
    out_printf(w, "  %s\n", d->summary);
    for (size_t k = 0; k < d->details.len; k++) {
        out_printf(w, "  - %s\n", *VEC_AT(&d->details, char *, k));
    }
    for (size_t k = 0; k < d->tasks.len && k < OUT_CHECK_TASKS; k++) {
        out_check_task(w, m, *VEC_AT(&d->tasks, uint64_t, k));
    }
    if (d->tasks.len > OUT_CHECK_TASKS) {
        out_printf(w, "    ... and %zu more tasks (snarl check --format json lists them)\n",
                   (size_t)d->tasks.len - OUT_CHECK_TASKS);
    }
    for (size_t k = 0; k < d->threads.len; k++) {
        out_check_thread(w, m, (int64_t)*VEC_AT(&d->threads, uint64_t, k));
    }
    out_puts(w, "\n");
}

void out_check_text(out_writer *w, const aio_model *m, const ana_result *diag) {
    size_t dead = out_deadlocks(diag), stuck = out_count(diag, ANA_STUCK), n = 0, tasks_dead = 0;
    for (size_t i = 0; i < diag->diagnoses.len; i++) {
        tasks_dead += out_is_asyncio_deadlock(VEC_AT(&diag->diagnoses, ana_diagnosis, i)->kind);
    }
    /* jstack-style: the tasks stuck for good lead, then the deadlocks; what
     * was read, last. */
    if (stuck) {
        out_printf(w, "Found %zu group%s of tasks stuck for good:\n\n", stuck,
                   stuck == 1 ? "" : "s");
        for (size_t i = 0; i < diag->diagnoses.len; i++) {
            const ana_diagnosis *d = VEC_AT(&diag->diagnoses, ana_diagnosis, i);
            if (d->kind == ANA_STUCK) {
                out_printf(w, "Stuck %zu:\n", ++n);
                out_check_one(w, m, d);
            }
        }
        n = 0;
    }
    if (tasks_dead) {
        out_printf(w, "Found %zu asyncio deadlock%s:\n\n", tasks_dead, tasks_dead == 1 ? "" : "s");
        for (size_t i = 0; i < diag->diagnoses.len; i++) {
            const ana_diagnosis *d = VEC_AT(&diag->diagnoses, ana_diagnosis, i);
            if (out_is_asyncio_deadlock(d->kind)) {
                out_printf(w, "Deadlock %zu (%s):\n", ++n, ana_kind_name(d->kind));
                out_check_one(w, m, d);
            }
        }
    }
    for (size_t i = 0; i < diag->diagnoses.len; i++) {
        const ana_diagnosis *d = VEC_AT(&diag->diagnoses, ana_diagnosis, i);
        if (d->kind == ANA_THREAD_LOCK_CYCLE) {
            out_check_thread_cycle(w, m, d);
        }
    }
    if (diag->diagnoses.len > dead + stuck) {
        out_puts(w, dead || stuck ? "Other findings:\n\n" : "Findings:\n\n");
        for (size_t i = 0; i < diag->diagnoses.len; i++) {
            const ana_diagnosis *d = VEC_AT(&diag->diagnoses, ana_diagnosis, i);
            if (!ana_kind_is_deadlock(d->kind) && d->kind != ANA_STUCK) {
                out_printf(w, "%s:\n", ana_kind_name(d->kind));
                out_check_one(w, m, d);
            }
        }
    }
    out_header_text(w, m);
    sbuf b;
    sbuf_init(&b);
    out_verdict(&b, m, diag);
    out_printf(w, "%s\n", sbuf_str(&b));
    sbuf_free(&b);
}

void out_json_diagnoses(out_writer *w, const aio_model *m, const ana_result *diag) {
    out_puts(w, "\"diagnoses\":[");
    for (size_t i = 0; i < diag->diagnoses.len; i++) {
        const ana_diagnosis *d = VEC_AT(&diag->diagnoses, ana_diagnosis, i);
        out_puts(w, i ? ",{\"kind\":" : "{\"kind\":");
        out_json_str(w, ana_kind_name(d->kind));
        out_puts(w, ",\"tasks\":");
        out_json_addrs(w, &d->tasks);
        out_puts(w, ",\"resources\":");
        out_json_addrs(w, &d->resources);
        out_puts(w, ",\"threads\":");
        out_json_tids(w, &d->threads);
        out_puts(w, ",\"loop\":");
        out_json_addr(w, d->loop);
        out_puts(w, ",\"summary\":");
        out_json_str(w, d->summary);
        out_puts(w, ",\"details\":[");
        for (size_t k = 0; k < d->details.len; k++) {
            out_puts(w, k ? "," : "");
            out_json_str(w, *VEC_AT(&d->details, char *, k));
        }
        out_puts(w, "]}");
    }
    out_puts(w, "],\"verdict\":");
    sbuf b;
    sbuf_init(&b);
    out_verdict(&b, m, diag);
    out_json_str(w, sbuf_str(&b));
    sbuf_free(&b);
    out_puts(w, ",");
}

void out_mark_task(sbuf *b, uint64_t id, const ana_result *diag) {
    unsigned marks = ana_marks(diag, id);
    for (int k = 0; marks && k < ANA_KIND_COUNT; k++) {
        if (marks & (1u << k)) {
            sbuf_printf(b, "  \xe2\x9a\xa0 %s", ana_kind_name((ana_kind)k));
        }
    }
}
