/* The public API (snarl.h): a session owns the memory backend, the symbol
 * table, the CPython target and the error record; run freezes a live target,
 * builds the model, thaws, then renders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aio/aio.h"
#include "ana/ana.h"
#include "base/err.h"
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
    const char *kind;
};

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

static int snarl_attach_common(snarl_session *s) {
    err_t e = sym_open(&s->sym, s->m);
    s->sym_open = true;
    if (e == ERR_OK) {
        e = py_open(&s->py, s->m, &s->sym, &s->err);
        s->py_open = true;
    }
    s->ready = e == ERR_OK;
    if (e == ERR_NO_FILE || (e == ERR_NOT_PYTHON && strcmp(s->kind, "core") == 0)) {
        /* In a core, "not Python" often means the files were not found. */
        bool missing = false;
        for (size_t i = 0; i < s->m->maps.len && !missing; i++) {
            const mem_map *mp = VEC_AT(&s->m->maps, mem_map, i);
            missing = mp->status == MEM_FILE_MISSING || mp->status == MEM_FILE_MISMATCH;
        }
        if (missing) {
            s->err.hint = err_hint(ERR_NO_FILE);
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
    s->m = mem_host_open(&s->err, host, s->sysroot);
    return s->m ? snarl_attach_common(s) : (int)s->err.code;
}

/* A process that exited but was not reaped yet is a zombie: gone for us. */
static bool snarl_process_exists(int pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f) {
        return false;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

static err_t snarl_build(snarl_session *s, const aio_options *opt, aio_model *model) {
    memset(model, 0, sizeof *model);
    vec_init(&model->threads, sizeof(aio_thread));
    vec_init(&model->tasks, sizeof(aio_task));
    vec_init(&model->loops, sizeof(aio_loop));
    vec_init(&model->resources, sizeof(aio_resource));
    vec_init(&model->warnings, sizeof(char *));
    vec_init(&model->names, sizeof(aio_name));
    aio_target *t = &model->target;
    t->kind = s->kind;
    t->pid = s->m->pid;
    snprintf(t->python, sizeof t->python, "%s", s->py.version);
    if (s->m->executable) {
        t->executable = util_strdup(s->m->executable);
    }
    mem_cache_flush(s->m);
    bool freeze = strcmp(s->m->ops->kind, "live") == 0 && !s->no_freeze;
    if (freeze) {
        err_t e = mem_freeze(s->m);
        if (e != ERR_OK) {
            return e;
        }
        t->frozen = true;
    }
    err_t e = aio_build(&s->py, opt, model);
    if (freeze) {
        mem_thaw(s->m);
    }
    if (e != ERR_OK && strcmp(s->m->ops->kind, "live") == 0 && !snarl_process_exists(s->m->pid)) {
        e = err_set(&s->err, ERR_GONE, "process %d exited while it was being read", s->m->pid);
    }
    if (mem_core_truncated(s->m)) {
        aio_warn(model, "the core file is truncated; parts of memory are missing");
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
        err_set(&s->err, ERR_USAGE, "unknown command '%s'", req && req->command ? req->command : "");
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
    aio_options opt = {.tasks = cmd->tasks, .running_only = !cmd->tasks,
                       .all_objects = req->all_objects != 0, .health = analyse,
                       .reachability = analyse};
    unsigned fail_mask = 0;
    if (!snarl_parse_kinds(req->fail_on, &fail_mask)) {
        err_set(&s->err, ERR_USAGE, "--fail-on takes diagnosis kinds: '%s'", req->fail_on);
        s->err.hint = "kinds: await-cycle, lock-cycle, lock-reacquire, wake-cycle, all-asleep, "
                      "loop-blocked, loop-self-wait, nested-loop, weak-pending-task";
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
    aio_model model;
    err_t e = snarl_build(s, &opt, &model);
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
        }
    }
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
    if (have_diag) {
        ana_result_free(&diag);
    }
    aio_model_free(&model);
    return e == ERR_OK ? status : SNARL_STATUS_ERROR;
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
