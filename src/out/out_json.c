/* The snarl/1 JSON document of docs/json.md: its shared pieces (target,
 * threads, frames, warnings) and the whole document with tasks, loops and
 * resources. Field names are the contract; compact, one document a line. */
#include "out.h"

#include <inttypes.h>
#include <math.h>

static const char *out_bool(bool b) {
    return b ? "true" : "false";
}

void out_json_addr(out_writer *w, uint64_t addr) {
    if (addr) {
        out_printf(w, "\"0x%" PRIx64 "\"", addr);
    } else {
        out_puts(w, "null");
    }
}

void out_json_addrs(out_writer *w, const vec *ids) {
    out_puts(w, "[");
    for (size_t i = 0; ids && i < ids->len; i++) {
        out_printf(w, "%s\"0x%" PRIx64 "\"", i ? "," : "", *VEC_AT(ids, uint64_t, i));
    }
    out_puts(w, "]");
}

/* JSON has no NaN or infinity; a clock we could not read is null. */
static void out_json_num(out_writer *w, bool has, double v) {
    if (has && isfinite(v)) {
        out_printf(w, "%.15g", v);
    } else {
        out_puts(w, "null");
    }
}

/* An absent number (0 for a thread id) is null. */
static void out_json_i64(out_writer *w, int64_t v) {
    if (v) {
        out_printf(w, "%" PRId64, v);
    } else {
        out_puts(w, "null");
    }
}

void out_json_target(out_writer *w, const aio_model *m) {
    const aio_target *t = &m->target;
    out_puts(w, "\"target\":{\"kind\":");
    out_json_str(w, t->kind);
    out_printf(w, ",\"pid\":%d,\"python\":", t->pid);
    out_json_str(w, t->python);
    out_puts(w, ",\"executable\":");
    out_json_str(w, t->executable);
    out_printf(w, ",\"frozen\":%s}", out_bool(t->frozen));
}

static void out_json_frame(out_writer *w, const aio_frame *f) {
    if (!aio_frame_function(f)) {
        out_printf(w,
                   "{\"function\":null,\"file\":null,\"line\":null,"
                   "\"error\":\"unreadable at 0x%" PRIx64 "\"",
                   f->addr);
    } else {
        out_puts(w, "{\"function\":");
        out_json_str(w, aio_frame_function(f));
        out_puts(w, ",\"file\":");
        out_json_str(w, aio_frame_file(f));
        if (f->line >= 0) {
            out_printf(w, ",\"line\":%d", f->line);
        } else {
            out_puts(w, ",\"line\":null");
        }
    }
    if (aio_frame_task(f)) {
        out_printf(w, ",\"task\":\"0x%" PRIx64 "\"", aio_frame_task(f));
    }
    const vec *locals = aio_frame_locals_of(f);
    if (locals) {
        out_puts(w, ",\"locals\":[");
        for (size_t i = 0; i < locals->len; i++) {
            const aio_local *l = VEC_AT(locals, aio_local, i);
            out_puts(w, i ? ",{\"name\":" : "{\"name\":");
            out_json_str(w, l->name);
            out_puts(w, ",\"repr\":");
            out_json_str(w, l->repr);
            out_puts(w, "}");
        }
        out_puts(w, "]");
    }
    out_puts(w, "}");
}

void out_json_frames(out_writer *w, const vec *frames) {
    out_puts(w, "[");
    for (size_t k = 0; k < frames->len; k++) {
        out_puts(w, k ? "," : "");
        out_json_frame(w, VEC_AT(frames, aio_frame, k));
    }
    out_puts(w, "]");
}

void out_json_threads(out_writer *w, const aio_model *m) {
    out_puts(w, "\"threads\":[");
    for (size_t i = 0; i < m->threads.len; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        out_printf(w, "%s{\"native_id\":%" PRId64 ",\"name\":", i ? "," : "", th->native_id);
        out_json_str(w, th->name[0] ? th->name : NULL);
        out_printf(w, ",\"holds_gil\":%s,\"truncated\":%s,\"recovered\":%s,\"stack\":",
                   out_bool(th->holds_gil), out_bool(th->truncated), out_bool(th->recovered));
        out_json_frames(w, &th->frames);
        out_puts(w, ",\"waits\":");
        if (th->waits_kind == AIO_KIND_NONE) {
            out_puts(w, "null");
        } else {
            out_puts(w, "{\"kind\":");
            out_json_str(w, aio_kind_name(th->waits_kind));
            out_puts(w, ",\"id\":");
            out_json_addr(w, th->waits_on);
            out_puts(w, ",\"type\":");
            out_json_str(w, th->waits_type[0] ? th->waits_type : NULL);
            out_printf(w, ",\"timeout\":%s}", out_bool(th->waits_timeout));
        }
        out_puts(w, ",\"work\":");
        if (!th->work_item) {
            out_puts(w, "null");
        } else {
            out_puts(w, "{\"item\":");
            out_json_addr(w, th->work_item);
            out_puts(w, ",\"function\":");
            out_json_str(w, th->work_fn[0] ? th->work_fn : NULL);
            out_puts(w, ",\"future\":");
            out_json_addr(w, th->work_future);
            out_puts(w, "}");
        }
        out_puts(w, "}");
    }
    out_puts(w, "]");
}

/* Native thread ids, as JSON numbers. */
void out_json_tids(out_writer *w, const vec *ids) {
    out_puts(w, "[");
    for (size_t i = 0; i < ids->len; i++) {
        out_printf(w, "%s%" PRId64, i ? "," : "", (int64_t)*VEC_AT(ids, uint64_t, i));
    }
    out_puts(w, "]");
}

void out_json_warnings(out_writer *w, const aio_model *m) {
    out_puts(w, "\"warnings\":[");
    for (size_t i = 0; i < m->warnings.len; i++) {
        out_puts(w, i ? "," : "");
        out_json_str(w, *VEC_AT(&m->warnings, char *, i));
    }
    out_puts(w, "]");
}

/* The type of what a task waits on: the engine's name for it, else the
 * resource's or the awaited task's type. */
static const char *out_waits_type(const out_index *ix, const aio_task *t) {
    if (t->waits_type && t->waits_type[0]) {
        return t->waits_type;
    }
    const aio_resource *r = out_find_resource(ix, t->waits_on);
    if (r && r->type[0]) {
        return r->type;
    }
    const aio_task *other = out_find_task(ix, t->waits_on);
    if (other && other->type[0]) {
        return other->type;
    }
    return NULL;
}

static void out_json_task(out_writer *w, const out_index *ix, const aio_task *t, unsigned verdict) {
    out_printf(w, "{\"id\":\"0x%" PRIx64 "\",\"name\":", t->id);
    out_json_str(w, t->name);
    out_puts(w, ",\"type\":");
    out_json_str(w, t->type && t->type[0] ? t->type : NULL);
    out_puts(w, ",\"request\":");
    if (t->request) {
        out_puts(w, "{\"method\":");
        out_json_str(w, t->request->method[0] ? t->request->method : NULL);
        out_puts(w, ",\"path\":");
        out_json_str(w, t->request->path[0] ? t->request->path : NULL);
        out_puts(w, ",\"client\":");
        out_json_str(w, t->request->client[0] ? t->request->client : NULL);
        out_puts(w, "}");
    } else {
        out_puts(w, "null");
    }
    out_puts(w, ",\"state\":");
    out_json_str(w, aio_state_name(t->state));
    out_printf(w, ",\"cancels\":%d,\"loop\":", t->cancels);
    out_json_addr(w, t->loop);
    out_puts(w, ",\"stack\":");
    out_json_frames(w, &t->frames);
    out_puts(w, ",\"waits\":");
    if (t->waits_kind == AIO_KIND_NONE) {
        out_puts(w, "null");
    } else {
        out_puts(w, "{\"kind\":");
        out_json_str(w, aio_kind_name(t->waits_kind));
        out_puts(w, ",\"id\":");
        out_json_addr(w, t->waits_on);
        out_puts(w, ",\"type\":");
        out_json_str(w, out_waits_type(ix, t));
        out_puts(w, "}");
    }
    out_puts(w, ",\"awaits\":");
    out_json_addrs(w, &t->awaits);
    out_puts(w, ",\"awaited_by\":");
    out_json_addrs(w, &t->awaited_by);
    out_puts(w, ",\"awaited_by_interpreter\":");
    out_json_addrs(w, t->awaited_by_interp);
    out_puts(w, ",\"found_by\":");
    out_json_str(w, t->found_by);
    out_puts(w, ",\"running_in_thread\":");
    out_json_i64(w, t->running_thread);
    out_puts(w, ",\"created_at\":");
    out_json_str(w, t->created_at);
    out_printf(w, ",\"truncated\":%s,\"weak_only\":%s,\"stuck\":%s,\"cancellable\":%s}",
               out_bool(t->truncated), out_bool(verdict & ANA_TASK_WEAK),
               out_bool(verdict & ANA_TASK_STUCK), out_bool(verdict & ANA_TASK_CANCELLABLE));
}

static void out_json_resource(out_writer *w, const aio_resource *r) {
    out_printf(w, "{\"id\":\"0x%" PRIx64 "\",\"kind\":", r->id);
    out_json_str(w, aio_kind_name(r->kind));
    out_puts(w, ",\"type\":");
    out_json_str(w, r->type);
    out_puts(w, ",\"future\":");
    out_json_addr(w, r->future);
    out_puts(w, ",\"waiters\":");
    out_json_addrs(w, &r->waiters);
    out_puts(w, ",\"members\":");
    out_json_addrs(w, &r->members);
    out_puts(w, ",\"deadline\":");
    out_json_num(w, r->has_deadline, r->deadline);
    out_puts(w, ",\"remaining\":");
    out_json_num(w, r->has_remaining, r->remaining);
    out_puts(w, ",\"detail\":");
    out_json_str(w, r->detail);
    out_puts(w, ",\"holders\":");
    out_json_addrs(w, &r->holders);
    out_puts(w, ",\"possible_holders\":");
    out_json_addrs(w, &r->possible_holders);
    out_puts(w, ",\"resolvers\":");
    out_json_addrs(w, &r->resolvers);
    out_puts(w, ",\"thread_holders\":");
    out_json_tids(w, &r->thread_holders);
    out_puts(w, ",\"thread_waiters\":");
    out_json_tids(w, &r->thread_waiters);
    out_puts(w, ",\"chained\":");
    out_json_addr(w, r->chained);
    out_puts(w, "}");
}

/* A resource the task waits on, awaits, or stands among the waiters or
 * members of. */
static bool out_touches(const aio_task *t, const aio_resource *r) {
    return r->id == t->waits_on || u64vec_has(&t->awaits, r->id) ||
           u64vec_has(&r->waiters, t->id) || u64vec_has(&r->members, t->id);
}

void out_document_json(out_writer *w, const aio_model *m, const aio_task *only,
                       const ana_result *diag) {
    out_index ix;
    if (!out_index_build(&ix, m, w)) {
        return;
    }
    out_puts(w, "{\"schema\":\"" SNARL_SCHEMA "\",");
    out_json_target(w, m);
    out_puts(w, ",");
    out_json_threads(w, m);
    out_puts(w, ",\"tasks_found_by\":");
    out_json_str(w, m->tasks_found_by);
    out_puts(w, ",\"tasks\":[");
    if (only) {
        out_json_task(w, &ix, only,
                      ana_task_verdict(diag, (size_t)(only - (const aio_task *)m->tasks.data)));
    } else {
        for (size_t i = 0; i < m->tasks.len; i++) {
            out_puts(w, i ? "," : "");
            out_json_task(w, &ix, VEC_AT(&m->tasks, aio_task, i), ana_task_verdict(diag, i));
        }
    }
    out_puts(w, "],\"loops\":[");
    for (size_t i = 0; i < m->loops.len; i++) {
        const aio_loop *l = VEC_AT(&m->loops, aio_loop, i);
        out_printf(w, "%s{\"id\":\"0x%" PRIx64 "\",\"type\":", i ? "," : "", l->id);
        out_json_str(w, l->type);
        out_puts(w, ",\"thread\":");
        out_json_i64(w, l->thread);
        out_puts(w, ",\"running_task\":");
        out_json_addr(w, l->running_task);
        out_puts(w, "}");
    }
    out_puts(w, "],\"resources\":[");
    bool first = true;
    for (size_t i = 0; i < m->resources.len; i++) {
        const aio_resource *r = VEC_AT(&m->resources, aio_resource, i);
        if (only && !out_touches(only, r)) {
            continue;
        }
        out_puts(w, first ? "" : ",");
        first = false;
        out_json_resource(w, r);
    }
    out_puts(w, "],");
    if (diag) {
        out_json_diagnoses(w, m, diag);
    }
    out_json_warnings(w, m);
    out_puts(w, "}\n");
    out_index_free(&ix);
}
