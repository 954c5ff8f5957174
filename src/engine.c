/* The public API (snarl.h): a session owns the memory backend, the symbol
 * table, the CPython target and the error record; run freezes a live target,
 * builds the model, thaws, then renders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aio/aio.h"
#include "ana/ana.h"
#include "base/err.h"
#include "engine.h"
#include "mem/mem.h"
#include "out/out.h"
#include "py/py.h"
#include "snarl.h"
#include "sym/sym.h"

struct snarl_session {
    err_record err;
    char *sysroot;
    bool no_freeze;
    mem *m;
    sym_table sym;
    bool sym_open;
    py_target py;
    bool py_open;
    bool ready; /* attached without error */
    bool held;  /* a debugger keeps the live target stopped while we read */
    const char *kind;
    engine_attach_opts sym_opts; /* engine_attach_mem's symbol setup */
    snarl_timing timing;         /* of the last run */
    snarl_summary summary;       /* of the last run */
    char kinds_hint[256];        /* "kinds: ..." for a bad --fail-on, from ana's own names */
};

static double snarl_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

snarl_session *snarl_open(const snarl_options *opt) {
    snarl_session *s = util_calloc(1, sizeof *s);
    if (!s) {
        return NULL;
    }
    err_clear(&s->err);
    if (opt) {
        s->no_freeze = opt->no_freeze != 0;
        if (opt->sysroot && !(s->sysroot = util_strdup(opt->sysroot))) {
            util_free(s);
            return NULL;
        }
    }
    return s;
}

void snarl_close(snarl_session *s) {
    if (!s) {
        return;
    }
    if (s->py_open) {
        py_close(&s->py);
    }
    if (s->sym_open) {
        sym_close(&s->sym);
    }
    mem_close(s->m);
    util_free(s->sysroot);
    util_free(s);
}

/* Room in the error message for the list of files not found; the rest of
 * the sentence fits in what is left of ERR_MSG_MAX. */
#define SNARL_MISSING_CHARS (ERR_MSG_MAX - 160)

/* Says which of the target's files were not found, instead of what was not
 * found in the others: for a core from a container or another machine that
 * list is the whole story, and --sysroot the fix. */
static void snarl_missing_files(snarl_session *s, err_t e) {
    sbuf list;
    sbuf_init(&list);
    size_t n = mem_describe_missing(s->m, &list, SNARL_MISSING_CHARS);
    if (n > 0 && !list.oom) {
        err_set(&s->err, e, "%s: %zu file%s the %s maps %s not found%s%s: %s",
                e == ERR_NOT_PYTHON ? "no Python runtime found"
                                    : "the Python runtime is unreadable",
                n, n == 1 ? "" : "s", strcmp(s->kind, "core") == 0 ? "core" : "process",
                n == 1 ? "was" : "were", s->sysroot ? " under " : " on this machine",
                s->sysroot ? s->sysroot : "", sbuf_str(&list));
    }
    s->err.hint = s->sysroot ? "--sysroot DIR must be the root file system the process ran in (a "
                               "container's root or an extracted image) with the same builds; or "
                               "pass the executable after the core"
                             : "the core names its files as the process saw them: pass --sysroot "
                               "DIR (a container's root file system or an extracted image), or the "
                               "executable after the core";
    if (strcmp(s->kind, "core") != 0) {
        s->err.hint = err_hint(ERR_NO_FILE); /* a live process: its files were there */
    }
    sbuf_free(&list);
}

/* Whatever went wrong (or even nothing did), a live target that died under
 * the read is named as such: what was read of it is partial, and the
 * failure it caused would blame something else (permission, no files
 * mapped, a runtime not initialized, a torn structure). */
static err_t snarl_check_exit(snarl_session *s, err_t e) {
    if (e == ERR_NOMEM || e == ERR_USAGE || !s->m || strcmp(s->kind, "live") != 0 ||
        !mem_gone(s->m)) {
        return e;
    }
    return err_set(&s->err, ERR_GONE, "process %d exited while it was being read", s->m->pid);
}

static int snarl_attach_common(snarl_session *s) {
    err_t e = sym_open(&s->sym, s->m);
    s->sym_open = true;
    s->sym.presets = s->sym_opts.presets;
    s->sym.npresets = s->sym_opts.npresets;
    s->sym.observe = s->sym_opts.observe;
    s->sym.observe_ctx = s->sym_opts.observe_ctx;
    if (e == ERR_OK) {
        e = py_open(&s->py, s->m, &s->sym, &s->err);
        s->py_open = true;
    }
    e = e == ERR_OK ? ERR_OK : snarl_check_exit(s, e);
    s->ready = e == ERR_OK;
    if (e == ERR_NO_FILE || (e == ERR_NOT_PYTHON && strcmp(s->kind, "core") == 0)) {
        /* In a core, "not Python" often means the files were not found. */
        bool missing = false;
        for (size_t i = 0; i < s->m->maps.len && !missing; i++) {
            const mem_map *mp = VEC_AT(&s->m->maps, mem_map, i);
            missing = mp->status == MEM_FILE_MISSING || mp->status == MEM_FILE_MISMATCH;
        }
        if (missing) {
            snarl_missing_files(s, e);
        }
    }
    return e;
}

static int snarl_check_fresh(snarl_session *s) {
    if (s->m) {
        return err_set(&s->err, ERR_USAGE, "this session already has a target");
    }
    err_clear(&s->err);
    return ERR_OK;
}

int snarl_attach_pid(snarl_session *s, int pid) {
    if (snarl_check_fresh(s) != ERR_OK) {
        return s->err.code;
    }
    s->kind = "live";
    s->m = mem_live_open(&s->err, pid, !s->no_freeze);
    return s->m ? snarl_attach_common(s) : (int)s->err.code;
}

int snarl_attach_core(snarl_session *s, const char *core, const char *executable) {
    if (snarl_check_fresh(s) != ERR_OK) {
        return s->err.code;
    }
    s->kind = "core";
    s->m = mem_core_open(&s->err, core, executable, s->sysroot);
    if (!s->m) {
        return s->err.code;
    }
    int e = snarl_attach_common(s);
    if (e != ERR_OK && mem_core_truncated(s->m) && e != ERR_UNSUPPORTED) {
        err_set(&s->err, ERR_CORE, "%s is truncated (shorter than its headers say): %s", core,
                s->err.msg);
        return ERR_CORE;
    }
    return e;
}

int snarl_attach_host(snarl_session *s, const snarl_host *host) {
    if (snarl_check_fresh(s) != ERR_OK) {
        return s->err.code;
    }
    s->kind = host && host->is_core ? "core" : "live";
    s->held = host && !host->is_core && host->stopped;
    s->m = mem_host_open(&s->err, host, s->sysroot);
    return s->m ? snarl_attach_common(s) : (int)s->err.code;
}

int engine_attach_mem(snarl_session *s, mem *m, const char *kind, const engine_attach_opts *opts) {
    if (snarl_check_fresh(s) != ERR_OK) {
        mem_close(m);
        return s->err.code;
    }
    s->kind = kind;
    s->m = m;
    m->err = &s->err;
    if (opts) {
        s->sym_opts = *opts;
    }
    return snarl_attach_common(s);
}

static err_t snarl_build(snarl_session *s, const aio_options *opt, aio_model *model) {
    memset(model, 0, sizeof *model);
    vec_init(&model->threads, sizeof(aio_thread));
    vec_init(&model->tasks, sizeof(aio_task));
    vec_init(&model->loops, sizeof(aio_loop));
    vec_init(&model->resources, sizeof(aio_resource));
    vec_init(&model->warnings, sizeof(char *));
    vec_init(&model->chains, sizeof(uint64_t));
    aio_target *t = &model->target;
    t->kind = s->kind;
    t->pid = s->m->pid;
    snprintf(t->python, sizeof t->python, "%s", s->py.version);
    if (s->m->executable) {
        /* The backend keeps the raw path to open the file; the model only
         * holds text that can be shown (util_escape). */
        sbuf exe;
        sbuf_init(&exe);
        util_escape(&exe, s->m->executable, strlen(s->m->executable), 0);
        t->executable = exe.oom ? NULL : util_strdup(sbuf_str(&exe));
        sbuf_free(&exe);
    }
    mem_cache_flush(s->m);
    bool freeze = strcmp(s->m->ops->kind, "live") == 0 && !s->no_freeze;
    double t0 = snarl_now_ms();
    err_t e = freeze ? mem_freeze(s->m) : ERR_OK;
    t->frozen = (freeze && e == ERR_OK) || s->held;
    if (e == ERR_OK) {
        e = aio_build(&s->py, opt, model);
    }
    if (freeze) {
        mem_thaw(s->m);
        s->timing.frozen_ms += snarl_now_ms() - t0;
    }
    /* A process that died under the read leaves a model of whatever was read
     * before: a partial picture that would pass for a clean one. */
    e = snarl_check_exit(s, e);
    if (mem_core_truncated(s->m)) {
        aio_warn(model, "the core file is truncated; parts of memory are missing");
    }
    return e;
}

/* How long a live target runs between the read and the one that confirms
 * its findings: long enough for a busy loop to finish the callback it was
 * in (asyncio warns about callbacks slower than 100 ms), short enough not to
 * delay a report noticeably. */
#define SNARL_CONFIRM_DELAY_MS 200
/* Findings of one moment rather than of a state: a loop thread found
 * running a task's code may be busy, not blocked. */
#define SNARL_MOMENTARY_KINDS (1u << ANA_LOOP_BLOCKED)

/* Which findings a second read must repeat: none from a core (it cannot
 * change); the momentary ones from a frozen process; all of them from a
 * process read without freezing, whose memory may have changed between
 * any two reads. */
static unsigned snarl_confirm_kinds(const snarl_session *s) {
    if (strcmp(s->m->ops->kind, "live") != 0) {
        return 0;
    }
    return s->no_freeze ? (1u << ANA_KIND_COUNT) - 1 : SNARL_MOMENTARY_KINDS;
}

static bool snarl_unreadable_frames(const vec *frames) {
    for (size_t i = 0; i < frames->len; i++) {
        if (!aio_frame_function(VEC_AT(frames, aio_frame, i))) {
            return true;
        }
    }
    return false;
}

static const aio_thread *snarl_thread(const aio_model *m, int64_t native_id) {
    for (size_t i = 0; i < m->threads.len; i++) {
        const aio_thread *th = VEC_AT(&m->threads, aio_thread, i);
        if (th->native_id == native_id) {
            return th;
        }
    }
    return NULL;
}

static const aio_loop *snarl_loop(const aio_model *m, uint64_t id) {
    for (size_t i = 0; i < m->loops.len; i++) {
        if (VEC_AT(&m->loops, aio_loop, i)->id == id) {
            return VEC_AT(&m->loops, aio_loop, i);
        }
    }
    return NULL;
}

/* The loop did not move between two reads: its thread is in the same frames
 * (and at the same lines, but for the innermost frame, where code that
 * computes rather than waits moves on), and the front of its ready queue,
 * where only the loop itself pops, stayed put. A busy loop that was only
 * running one callback of many at the first read fails one test or the
 * other; a blocked one passes both. */
static bool snarl_loop_held_still(const aio_model *a, const aio_model *b, uint64_t loop_id) {
    const aio_loop *la = snarl_loop(a, loop_id), *lb = snarl_loop(b, loop_id);
    if (!la || !lb || la->health_known != lb->health_known ||
        (la->health_known &&
         (la->ready_block != lb->ready_block || la->ready_index != lb->ready_index))) {
        return false;
    }
    const aio_thread *ta = snarl_thread(a, la->thread), *tb = snarl_thread(b, lb->thread);
    if (!ta || !tb || ta->frames.len != tb->frames.len) {
        return false;
    }
    for (size_t i = 0; i < ta->frames.len; i++) {
        const aio_frame *fa = VEC_AT(&ta->frames, aio_frame, i);
        const aio_frame *fb = VEC_AT(&tb->frames, aio_frame, i);
        if (fa->addr != fb->addr || (i > 0 && fa->line != fb->line) || !aio_frame_function(fa) ||
            !aio_frame_function(fb) ||
            strcmp(aio_frame_function(fa), aio_frame_function(fb)) != 0) {
            return false;
        }
    }
    return true;
}

/* Takes out of the second read's findings each loop-blocked one whose loop
 * thread moved between the reads, so that it does not confirm the first. */
static void snarl_forget_moved_loops(const aio_model *first, const aio_model *again,
                                     ana_result *diag2) {
    size_t kept = 0;
    for (size_t i = 0; i < diag2->diagnoses.len; i++) {
        ana_diagnosis *d = VEC_AT(&diag2->diagnoses, ana_diagnosis, i);
        if (d->kind == ANA_LOOP_BLOCKED && !snarl_loop_held_still(first, again, d->loop)) {
            ana_diagnosis_free(d);
            continue;
        }
        *VEC_AT(&diag2->diagnoses, ana_diagnosis, kept++) = *d;
    }
    diag2->diagnoses.len = kept;
}

/* Reads a live target a second time, after a pause, and drops the findings
 * of the kinds snarl_confirm_kinds names that it does not repeat; after a
 * read without freezing, also says how much of the read was inconsistent
 * (the items themselves already carry their marks). */
static err_t snarl_confirm(snarl_session *s, const aio_options *opt, aio_model *model,
                           ana_result *diag) {
    unsigned kinds = snarl_confirm_kinds(s), found = 0;
    for (size_t i = 0; diag && i < diag->diagnoses.len; i++) {
        found |= 1u << VEC_AT(&diag->diagnoses, ana_diagnosis, i)->kind;
    }
    size_t dropped = 0;
    if (found & kinds) {
        nanosleep(&(struct timespec){.tv_nsec = SNARL_CONFIRM_DELAY_MS * 1000000L}, NULL);
        aio_model again;
        ana_result diag2;
        static const ana_result none;
        err_t again_e = snarl_build(s, opt, &again);
        if (again_e == ERR_OK && ana_diagnose(&again, &diag2) == ERR_OK) {
            snarl_forget_moved_loops(model, &again, &diag2);
            dropped = ana_keep_confirmed(diag, &diag2, kinds);
            ana_result_free(&diag2);
        } else {
            /* No second read: nothing is confirmed. */
            dropped = ana_keep_confirmed(diag, &none, kinds);
        }
        aio_model_free(&again);
        if (again_e == ERR_GONE) {
            return again_e; /* it died before the findings could be confirmed */
        }
        err_clear(&s->err);
    }
    err_t e = ERR_OK;
    size_t tasks = 0, threads = 0;
    for (size_t i = 0; s->no_freeze && i < model->tasks.len; i++) {
        const aio_task *t = VEC_AT(&model->tasks, aio_task, i);
        tasks += t->truncated || snarl_unreadable_frames(&t->frames);
    }
    for (size_t i = 0; s->no_freeze && i < model->threads.len; i++) {
        const aio_thread *th = VEC_AT(&model->threads, aio_thread, i);
        threads += th->truncated || snarl_unreadable_frames(&th->frames);
    }
    if (tasks || threads || (s->no_freeze && model->tasks_truncated)) {
        e = aio_warn(model,
                     "the process ran while it was read (--no-freeze): %zu tasks and %zu threads "
                     "were not read consistently and are marked%s",
                     tasks, threads, model->tasks_truncated ? "; some tasks may be missing" : "");
    }
    if (e == ERR_OK && dropped) {
        e = aio_warn(model,
                     "%zu %s dropped because a second read %d ms later did not repeat %s (%s)",
                     dropped, dropped == 1 ? "finding was" : "findings were",
                     SNARL_CONFIRM_DELAY_MS, dropped == 1 ? "it" : "them",
                     s->no_freeze ? "the process ran while it was read"
                                  : "the loop was busy running callbacks, not blocked");
    }
    return e;
}

/* The commands, what each needs built, and which formats it prints. */
typedef struct snarl_command {
    const char *name;
    bool tasks;
    unsigned formats; /* bit per snarl_format */
} snarl_command;

#define FMT(f) (1u << (f))
static const snarl_command snarl_commands[] = {
    {"check", true, FMT(SNARL_FORMAT_TEXT) | FMT(SNARL_FORMAT_JSON)},
    {"stacks", false, FMT(SNARL_FORMAT_TEXT) | FMT(SNARL_FORMAT_JSON)},
    {"tasks", true, FMT(SNARL_FORMAT_TEXT) | FMT(SNARL_FORMAT_JSON)},
    {"tree", true, FMT(SNARL_FORMAT_TEXT) | FMT(SNARL_FORMAT_JSON)},
    {"graph", true, FMT(SNARL_FORMAT_DOT) | FMT(SNARL_FORMAT_MERMAID) | FMT(SNARL_FORMAT_JSON)},
    {"task", true, FMT(SNARL_FORMAT_TEXT) | FMT(SNARL_FORMAT_JSON)},
};
#undef FMT

static const char *const snarl_format_names[] = {"text", "json", "dot", "mermaid"};

/* "kind,kind" to a mask of ana_kind bits; NULL or empty: every kind. */
static bool snarl_parse_kinds(const char *list, unsigned *mask) {
    *mask = 0;
    if (!list || !*list) {
        *mask = (1u << ANA_KIND_COUNT) - 1;
        return true;
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        ana_kind k;
        if (!ana_kind_parse(tok, &k)) {
            return false;
        }
        *mask |= 1u << k;
    }
    return true;
}

static bool snarl_parse_id(const char *s, uint64_t *out) {
    char *end;
    if (!s || !*s) {
        return false;
    }
    unsigned long long v = strtoull(s, &end, 16);
    *out = v;
    return *end == '\0' && v != 0;
}

static void snarl_render(out_writer *w, const snarl_command *cmd, const snarl_request *req,
                         const aio_model *model, const aio_task *one, const ana_result *diag) {
    if (strcmp(cmd->name, "stacks") == 0) {
        out_stacks(w, model, req->format);
    } else if (req->format == SNARL_FORMAT_JSON) {
        out_document_json(w, model, one, diag);
    } else if (strcmp(cmd->name, "check") == 0) {
        out_check_text(w, model, diag);
    } else if (strcmp(cmd->name, "tasks") == 0) {
        out_tasks_text(w, model, req->all != 0);
    } else if (strcmp(cmd->name, "tree") == 0) {
        out_tree_text(w, model, diag);
    } else if (strcmp(cmd->name, "graph") == 0) {
        out_graph(w, model, req->format, diag);
    } else {
        out_task_text(w, model, one);
    }
}

static void snarl_summarise(snarl_session *s, const aio_model *model, const ana_result *diag,
                            bool check) {
    snarl_summary *sum = &s->summary;
    memset(sum, 0, sizeof *sum);
    snprintf(sum->python, sizeof sum->python, "%s", s->py.version);
    sum->tasks = model->tasks.len;
    for (size_t i = 0; i < model->tasks.len; i++) {
        sum->pending += VEC_AT(&model->tasks, aio_task, i)->state == AIO_STATE_PENDING;
    }
    sum->loops = model->loops.len;
    sum->threads = model->threads.len;
    unsigned seen = 0;
    for (size_t i = 0; diag && i < diag->diagnoses.len; i++) {
        ana_kind k = VEC_AT(&diag->diagnoses, ana_diagnosis, i)->kind;
        sum->findings++;
        if (!(seen & (1u << k))) {
            seen |= 1u << k;
            size_t at = strlen(sum->kinds);
            snprintf(sum->kinds + at, sizeof sum->kinds - at, "%s%s", at ? "," : "",
                     ana_kind_name(k));
        }
    }
    if (check && diag) {
        sbuf b;
        sbuf_init(&b);
        out_verdict(&b, model, diag);
        snprintf(sum->verdict, sizeof sum->verdict, "%s", sbuf_str(&b));
        sbuf_free(&b);
    }
}

int snarl_run(snarl_session *s, const snarl_request *req, snarl_sink sink, void *sink_ctx) {
    if (!s->ready) {
        if (s->err.code == ERR_OK) {
            err_set(&s->err, ERR_USAGE, "no target attached");
        }
        return SNARL_STATUS_ERROR;
    }
    err_clear(&s->err);
    const snarl_command *cmd = NULL;
    for (size_t i = 0; req && req->command && i < ARRAY_LEN(snarl_commands); i++) {
        if (strcmp(req->command, snarl_commands[i].name) == 0) {
            cmd = &snarl_commands[i];
        }
    }
    if (!cmd) {
        err_set(&s->err, ERR_USAGE, "unknown command '%s'",
                req && req->command ? req->command : "");
        return SNARL_STATUS_ERROR;
    }
    if ((unsigned)req->format >= ARRAY_LEN(snarl_format_names) ||
        !(cmd->formats & (1u << req->format))) {
        err_set(&s->err, ERR_USAGE, "%s does not print %s", cmd->name,
                (unsigned)req->format < ARRAY_LEN(snarl_format_names)
                    ? snarl_format_names[req->format]
                    : "that format");
        return SNARL_STATUS_ERROR;
    }
    bool check = strcmp(cmd->name, "check") == 0;
    /* tree and graph mark the findings on their tasks and edges. */
    bool analyse = check || strcmp(cmd->name, "tree") == 0 || strcmp(cmd->name, "graph") == 0;
    aio_options opt = {.tasks = cmd->tasks,
                       .running_only = !cmd->tasks,
                       .all_objects = req->all_objects != 0,
                       .health = analyse,
                       .reachability = analyse};
    unsigned fail_mask = 0;
    if (!snarl_parse_kinds(req->fail_on, &fail_mask)) {
        err_set(&s->err, ERR_USAGE, "--fail-on takes diagnosis kinds: '%s'", req->fail_on);
        /* Built from the analysis's own names, so a new kind is never left out. */
        size_t at = (size_t)snprintf(s->kinds_hint, sizeof s->kinds_hint, "kinds:");
        for (int k = 0; k < ANA_KIND_COUNT && at < sizeof s->kinds_hint; k++) {
            at += (size_t)snprintf(s->kinds_hint + at, sizeof s->kinds_hint - at, "%s %s",
                                   k ? "," : "", ana_kind_name((ana_kind)k));
        }
        s->err.hint = s->kinds_hint;
        return SNARL_STATUS_ERROR;
    }
    uint64_t id = 0;
    if (strcmp(cmd->name, "task") == 0) {
        if (!snarl_parse_id(req->task_id, &id)) {
            err_set(&s->err, ERR_USAGE, "'%s' is not a task id (an address such as 0x7f12...)",
                    req->task_id ? req->task_id : "");
            return SNARL_STATUS_ERROR;
        }
        opt.locals_of = id;
    }
    memset(&s->timing, 0, sizeof s->timing);
    memset(&s->summary, 0, sizeof s->summary);
    uint64_t reads0 = s->m->reads, misses0 = s->m->misses;
    double t0 = snarl_now_ms();
    aio_model model;
    err_t e = snarl_build(s, &opt, &model);
    double t1 = snarl_now_ms();
    s->timing.read_ms = t1 - t0;
    const aio_task *one = id ? aio_find_task(&model, id) : NULL;
    if (e == ERR_OK && id && !one) {
        e = err_set(&s->err, ERR_NOT_FOUND, "no task 0x%llx in this target",
                    (unsigned long long)id);
        s->err.hint = "'snarl tasks TARGET' lists the task ids";
    }
    ana_result diag;
    bool have_diag = false;
    if (e == ERR_OK && analyse) {
        e = ana_diagnose(&model, &diag);
        have_diag = e == ERR_OK;
        if (e != ERR_OK) {
            err_set(&s->err, e, NULL);
        } else if (diag.reach_doubt) {
            e = aio_warn(&model,
                         "the object graph does not add up (%s): no task is reported as stuck or "
                         "as kept alive only by weak references",
                         diag.reach_doubt);
        }
    }
    if (e == ERR_OK && strcmp(s->m->ops->kind, "live") == 0) {
        e = snarl_confirm(s, &opt, &model, have_diag ? &diag : NULL);
    }
    double t2 = snarl_now_ms();
    s->timing.analyse_ms = t2 - t1;
    int status = SNARL_STATUS_CLEAN;
    if (e == ERR_OK) {
        out_writer w;
        out_init(&w, sink, sink_ctx);
        snarl_render(&w, cmd, req, &model, one, have_diag ? &diag : NULL);
        if (!out_finish(&w)) {
            e = err_set(&s->err, ERR_IO, "the output was cut short");
        }
        for (size_t i = 0; check && have_diag && i < diag.diagnoses.len; i++) {
            if (fail_mask & (1u << VEC_AT(&diag.diagnoses, ana_diagnosis, i)->kind)) {
                status = SNARL_STATUS_FOUND;
            }
        }
    }
    if (e == ERR_OK) {
        snarl_summarise(s, &model, have_diag ? &diag : NULL, check);
    }
    if (have_diag) {
        ana_result_free(&diag);
    }
    aio_model_free(&model);
    s->timing.render_ms = snarl_now_ms() - t2;
    s->timing.reads = s->m->reads - reads0;
    s->timing.backend_reads = s->m->misses - misses0;
    return e == ERR_OK ? status : SNARL_STATUS_ERROR;
}

size_t snarl_escape(char *dst, size_t cap, const char *s, size_t n) {
    return util_escape_buf(dst, cap, s, n, 0);
}

int snarl_pid_exited(int pid) {
    return mem_proc_exited(pid, 0);
}

void snarl_last_summary(const snarl_session *s, snarl_summary *out) {
    static const snarl_summary none;
    *out = s ? s->summary : none;
    if (s && !out->python[0] && s->py_open) {
        snprintf(out->python, sizeof out->python, "%s", s->py.version);
    }
}

void snarl_last_timing(const snarl_session *s, snarl_timing *out) {
    static const snarl_timing none;
    *out = s ? s->timing : none;
}

const char *snarl_error(const snarl_session *s) {
    if (!s) {
        return "out of memory";
    }
    return s->err.msg[0] ? s->err.msg : err_sentence(s->err.code);
}

const char *snarl_hint(const snarl_session *s) {
    return s && s->err.hint ? s->err.hint : "";
}

int snarl_error_code(const snarl_session *s) {
    return s ? (int)s->err.code : ERR_NOMEM;
}

const char *snarl_error_name(const snarl_session *s) {
    return err_name(s ? s->err.code : ERR_NOMEM);
}
