/* Locals of a task's suspended frames, for `snarl task ID`: each name from
 * the code object with a short, bounded repr of its value, read once while
 * the model is built. */
#include "aio_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Characters of a str value we show before cutting it. */
#define AIO_REPR_STR_CHARS 80
/* Locals per frame we show. */
#define AIO_LOCALS_MAX 64

static void aio_repr(aio_ctx *c, uint64_t obj, sbuf *out) {
    py_target *t = c->t;
    const py_types *T = &t->types;
    uint64_t type;
    if (!obj) {
        sbuf_adds(out, "<unset>");
        return;
    }
    if (obj == T->none) {
        sbuf_adds(out, "None");
        return;
    }
    if (obj == T->true_ || obj == T->false_) {
        sbuf_adds(out, obj == T->true_ ? "True" : "False");
        return;
    }
    if (py_type_of(t, obj, &type) != ERR_OK) {
        sbuf_printf(out, "<unreadable at 0x%" PRIx64 ">", obj);
        return;
    }
    int64_t n;
    double d;
    bool cut;
    if (type == T->str) {
        sbuf s;
        sbuf_init(&s);
        if (py_read_str_repr(t, obj, &s, AIO_REPR_STR_CHARS, &cut) == ERR_OK) {
            sbuf_addc(out, '\'');
            sbuf_add(out, sbuf_str(&s), s.len);
            sbuf_adds(out, cut ? "'..." : "'");
        } else {
            sbuf_printf(out, "<str at 0x%" PRIx64 ">", obj);
        }
        sbuf_free(&s);
        return;
    }
    if (type == T->long_ && py_read_long(t, obj, &n) == ERR_OK) {
        sbuf_printf(out, "%" PRId64, n);
        return;
    }
    if (type == T->float_ && py_read_float(t, obj, &d) == ERR_OK) {
        sbuf_printf(out, "%.17g", d);
        return;
    }
    char name[64];
    py_type_name(t, type, name, sizeof name);
    uint64_t size;
    if ((type == T->tuple || type == T->list || type == T->dict || type == T->set) &&
        mem_read_u64(t->m,
                     obj + (uint64_t)(type == T->dict  ? t->L.dict_used
                                      : type == T->set ? t->L.set_used
                                                       : t->L.ob_size),
                     &size) == ERR_OK) {
        sbuf_printf(out, "<%s of %" PRIu64 " at 0x%" PRIx64 ">", name, size, obj);
        return;
    }
    if (aio_is_task(c, obj)) {
        sbuf_printf(out, "<%s 0x%" PRIx64 ">", name, obj);
        return;
    }
    sbuf_printf(out, "<%s at 0x%" PRIx64 ">", name, obj);
}

err_t aio_read_locals(aio_ctx *c, aio_task *task) {
    py_target *t = c->t;
    vec names;
    vec_init(&names, sizeof(uint64_t));
    err_t e = ERR_OK;
    for (size_t i = 0; i < task->frames.len && e == ERR_OK; i++) {
        aio_frame *f = VEC_AT(&task->frames, aio_frame, i);
        py_frame pf;
        names.len = 0;
        if (!aio_frame_function(f) || py_frame_read(t, f->addr, &pf) != ERR_OK || !pf.code ||
            py_code_local_names(t, pf.code, &names) != ERR_OK) {
            continue;
        }
        for (size_t k = 0; k < names.len && k < AIO_LOCALS_MAX && e == ERR_OK; k++) {
            char name[128];
            uint64_t value;
            if (py_read_str_buf(t, *VEC_AT(&names, uint64_t, k), name, sizeof name) != ERR_OK ||
                py_frame_slot(t, f->addr, (int)k, &value) != ERR_OK) {
                continue;
            }
            sbuf r;
            sbuf_init(&r);
            aio_repr(c, value, &r);
            if (r.len > AIO_REPR_MAX) {
                r.len = AIO_REPR_MAX; /* may cut a character: mark it */
                while (r.len && ((unsigned char)r.data[r.len] & 0xC0) == 0x80) {
                    r.len--;
                }
                r.data[r.len] = '\0';
                sbuf_adds(&r, "...");
            }
            vec *locals = aio_frame_locals(f);
            aio_local *l = locals ? vec_push(locals) : NULL;
            if (!l || !(l->name = util_strdup(name)) || !(l->repr = util_strdup(sbuf_str(&r)))) {
                e = ERR_NOMEM;
            }
            sbuf_free(&r);
        }
        if (e == ERR_OK && names.len > AIO_LOCALS_MAX) {
            /* Say where the limit cut, as a last pseudo-local both views show. */
            char more[64];
            snprintf(more, sizeof more, "%zu more locals not shown",
                     (size_t)names.len - AIO_LOCALS_MAX);
            vec *locals = aio_frame_locals(f);
            aio_local *l = locals ? vec_push(locals) : NULL;
            if (!l || !(l->name = util_strdup("...")) || !(l->repr = util_strdup(more))) {
                e = ERR_NOMEM;
            }
        }
    }
    vec_free(&names);
    return e;
}
