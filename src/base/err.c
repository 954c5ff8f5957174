/* The error list expanded into tables, and the session's error record. */
#include "err.h"

#include "util.h"

#include <stdio.h>
#include <string.h>

static const char *const err_sentences[] = {
#define ERR_S(name, sentence, hint) sentence,
    ERR_LIST(ERR_S)
#undef ERR_S
};
static const char *const err_hints[] = {
#define ERR_H(name, sentence, hint) hint,
    ERR_LIST(ERR_H)
#undef ERR_H
};
static const char *const err_names[] = {
#define ERR_N(name, sentence, hint) #name,
    ERR_LIST(ERR_N)
#undef ERR_N
};

const char *err_sentence(err_t code) {
    return (unsigned)code < ERR_COUNT ? err_sentences[code] : "unknown error";
}

const char *err_hint(err_t code) {
    return (unsigned)code < ERR_COUNT ? err_hints[code] : "";
}

const char *err_name(err_t code) {
    return (unsigned)code < ERR_COUNT ? err_names[code] : "UNKNOWN";
}

err_t err_setv(err_record *rec, err_t code, const char *fmt, va_list ap) {
    rec->code = code;
    rec->hint = err_hint(code);
    if (fmt) {
        /* The details are often the target's (a path from a core's notes, a
         * name): the sentence is escaped whole, so no caller can forget to.
         * snarl's own sentences hold nothing that escaping changes. */
        char raw[ERR_MSG_MAX];
        vsnprintf(raw, sizeof raw, fmt, ap);
        util_escape_buf(rec->msg, sizeof rec->msg, raw, strlen(raw), 0);
    } else {
        snprintf(rec->msg, sizeof rec->msg, "%s", err_sentence(code));
    }
    return code;
}

err_t err_set(err_record *rec, err_t code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    err_setv(rec, code, fmt, ap);
    va_end(ap);
    return code;
}

void err_clear(err_record *rec) {
    rec->code = ERR_OK;
    rec->sys_errno = 0;
    rec->msg[0] = '\0';
    rec->hint = "";
}

void err_push(err_record *rec, const char *fmt, ...) {
    if (rec->nctx < ERR_CTX_MAX) {
        va_list ap;
        va_start(ap, fmt);
        char raw[ERR_CTX_LEN];
        vsnprintf(raw, sizeof raw, fmt, ap);
        va_end(ap);
        util_escape_buf(rec->ctx[rec->nctx], ERR_CTX_LEN, raw, strlen(raw), 0);
    }
    rec->nctx++;
}

void err_pop(err_record *rec) {
    if (rec->nctx > 0) {
        rec->nctx--;
    }
}
