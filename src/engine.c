/* The public API (snarl.h): a session owns the memory backend, the symbol
 * table, the CPython target and the error record; run freezes a live target,
 * builds the model, thaws, then renders. */
#include <stdio.h>
#include <string.h>

#include "aio/aio.h"
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

static err_t snarl_build(snarl_session *s, aio_model *model) {
    memset(model, 0, sizeof *model);
    vec_init(&model->threads, sizeof(aio_thread));
    vec_init(&model->warnings, sizeof(char *));
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
    err_t e = aio_build(&s->py, model);
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

int snarl_run(snarl_session *s, const snarl_request *req, snarl_sink sink, void *sink_ctx) {
    if (!s->ready) {
        if (s->err.code == ERR_OK) {
            err_set(&s->err, ERR_USAGE, "no target attached");
        }
        return SNARL_STATUS_ERROR;
    }
    err_clear(&s->err);
    if (!req || !req->command || strcmp(req->command, "stacks") != 0) {
        err_set(&s->err, ERR_USAGE, "unknown command '%s'", req && req->command ? req->command : "");
        return SNARL_STATUS_ERROR;
    }
    if (req->format != SNARL_FORMAT_TEXT && req->format != SNARL_FORMAT_JSON) {
        err_set(&s->err, ERR_USAGE, "stacks prints text or json");
        return SNARL_STATUS_ERROR;
    }
    aio_model model;
    err_t e = snarl_build(s, &model);
    if (e == ERR_OK) {
        out_writer w;
        out_init(&w, sink, sink_ctx);
        out_stacks(&w, &model, req->format);
        if (!out_finish(&w)) {
            e = err_set(&s->err, ERR_IO, "the output was cut short");
        }
    }
    aio_model_free(&model);
    /* An analysis error may leave a stale code; report only real failures. */
    return e == ERR_OK ? SNARL_STATUS_CLEAN : SNARL_STATUS_ERROR;
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
