/* Internal entry points of the engine for the test tools in tests/fuzz/ (the
 * fuzz targets, the fault-injection tool and the image recorder): attach a
 * memory backend the caller built, optionally with recorded symbol facts in
 * place of the target's ELF files or an observer of the symbol lookups. Not
 * part of the public API (snarl.h); front ends never use it. */
#ifndef SNARL_ENGINE_H
#define SNARL_ENGINE_H

#include "mem/mem.h"
#include "snarl.h"
#include "sym/sym.h"

typedef struct engine_attach_opts {
    const sym_preset *presets; /* borrowed for the session's lifetime */
    size_t npresets;
    sym_observer observe;
    void *observe_ctx;
} engine_attach_opts;

/* Attaches m (the session owns it from now on, also on failure) as a target
 * of the given kind ("core" or "live"); returns 0 or an error code, as the
 * snarl_attach_* functions do. */
int engine_attach_mem(snarl_session *s, mem *m, const char *kind, const engine_attach_opts *opts);

#endif
