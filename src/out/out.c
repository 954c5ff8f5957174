/* Buffered writing to the front end's sink and JSON string escaping. Every
 * byte a view writes passes util_escape (keeping the newlines and tabs that
 * are the views' own): whatever a view forgot, stdout gets valid UTF-8 and
 * no control character. Names reach the model escaped already (py_read_*),
 * which is what keeps a newline inside a name from breaking a line. */
#include "out.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void out_init(out_writer *w, snarl_sink sink, void *ctx) {
    w->sink = sink;
    w->ctx = ctx;
    w->failed = false;
    sbuf_init(&w->buf);
}

static void out_flush(out_writer *w) {
    if (w->buf.oom) {
        w->failed = true;
    }
    if (!w->failed && w->buf.len && w->sink(w->ctx, w->buf.data, w->buf.len) != 0) {
        w->failed = true;
    }
    sbuf_reset(&w->buf);
    w->buf.oom = false;
}

bool out_finish(out_writer *w) {
    out_flush(w);
    sbuf_free(&w->buf);
    return !w->failed;
}

static void out_maybe_flush(out_writer *w) {
    if (w->buf.len >= OUT_FLUSH_AT || w->buf.oom) {
        out_flush(w);
    }
}

void out_puts(out_writer *w, const char *s) {
    util_escape(&w->buf, s, strlen(s), UTIL_ESC_KEEP_LINES);
    out_maybe_flush(w);
}

void out_printf(out_writer *w, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n < sizeof small) {
        util_escape(&w->buf, small, (size_t)n, UTIL_ESC_KEEP_LINES);
    } else {
        char *big = util_alloc((size_t)n + 1);
        if (!big) {
            w->failed = true;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        util_escape(&w->buf, big, (size_t)n, UTIL_ESC_KEEP_LINES);
        util_free(big);
    }
    out_maybe_flush(w);
}

void out_json_str(out_writer *w, const char *s) {
    if (!s) {
        out_puts(w, "null");
        return;
    }
    sbuf *b = &w->buf;
    sbuf_addc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            sbuf_adds(b, "\\\"");
            break;
        case '\\':
            sbuf_adds(b, "\\\\");
            break;
        case '\n':
            sbuf_adds(b, "\\n");
            break;
        case '\r':
            sbuf_adds(b, "\\r");
            break;
        case '\t':
            sbuf_adds(b, "\\t");
            break;
        default:
            if (*p < 0x20) {
                sbuf_printf(b, "\\u%04x", *p);
            } else if (*p < 0x80) {
                sbuf_addc(b, (char)*p);
            } else {
                /* Valid UTF-8 passes through; anything else (bytes torn out
                 * of a live process) becomes U+FFFD so the document stays
                 * valid JSON. */
                size_t n = util_utf8_len(p);
                sbuf_add(b, n ? (const char *)p : "\xEF\xBF\xBD", n ? n : 3);
                p += n ? n - 1 : 0;
            }
        }
    }
    sbuf_addc(b, '"');
    out_maybe_flush(w);
}
