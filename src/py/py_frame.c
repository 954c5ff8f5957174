/* Interpreter frames and code objects: reading one frame, telling Python
 * frames from shims and entry frames, and the line of the frame's current
 * instruction from the code object's location table (3.11-3.15 format). */
#include "py.h"

#include <string.h>

/* Code objects we cache per target; beyond that they are read again. A
 * stuck program's stacks use a few hundred. */
#define PY_CODE_CACHE_SLOTS 8192

/* Largest bytecode we believe (bytes); an instruction pointer further from
 * its code's start is damage and gets no line. */
#define PY_CODE_BYTES_MAX (64u << 20)

struct py_code_cache {
    uint64_t addr[PY_CODE_CACHE_SLOTS];
    py_code *code[PY_CODE_CACHE_SLOTS];
};

static void py_code_free(py_code *c) {
    if (c) {
        util_free(c->qualname);
        util_free(c->filename);
        util_free(c->linetable);
        util_free(c);
    }
}

void py_code_cache_free(py_target *t);
void py_code_cache_free(py_target *t) {
    if (!t->codes) {
        return;
    }
    for (size_t i = 0; i < PY_CODE_CACHE_SLOTS; i++) {
        py_code_free(t->codes->code[i]);
    }
    util_free(t->codes);
    t->codes = NULL;
}

static char *py_str_dup(py_target *t, uint64_t obj) {
    sbuf b;
    sbuf_init(&b);
    bool cut = false;
    err_t e = py_read_str(t, obj, &b, PY_STR_MAX, &cut);
    if (e == ERR_OK && cut) {
        sbuf_adds(&b, "...");
    }
    char *s = e == ERR_OK && !b.oom ? util_strdup(sbuf_str(&b)) : NULL;
    sbuf_free(&b);
    return s;
}

static err_t py_code_load(py_target *t, uint64_t addr, py_code **out) {
    const py_layout *L = &t->L;
    uint8_t b[512];
    size_t n = (size_t)L->co_code_adaptive;
    if (n > sizeof b || mem_read(t->m, addr, n, b) != ERR_OK) {
        return ERR_READ;
    }
    if (rd_u64(b, (size_t)L->ob_type) != t->types.code) {
        return ERR_CORRUPT;
    }
    py_code *c = util_calloc(1, sizeof *c);
    if (!c) {
        return ERR_NOMEM;
    }
    c->addr = addr;
    c->firstlineno = (int)rd_u32(b, (size_t)L->co_firstlineno);
    c->nlocalsplus = (int)rd_u32(b, (size_t)L->co_nlocalsplus);
    c->qualname = py_str_dup(t, rd_u64(b, (size_t)L->co_qualname));
    c->filename = py_str_dup(t, rd_u64(b, (size_t)L->co_filename));
    uint64_t lt = rd_u64(b, (size_t)L->co_linetable);
    uint64_t lt_len;
    if (lt && mem_read_u64(t->m, lt + (uint64_t)L->bytes_size, &lt_len) == ERR_OK &&
        lt_len <= PY_LINETABLE_MAX) {
        c->linetable = util_alloc((size_t)lt_len);
        if (c->linetable &&
            mem_read(t->m, lt + (uint64_t)L->bytes_data, (size_t)lt_len, c->linetable) == ERR_OK) {
            c->linetable_len = (size_t)lt_len;
        } else {
            util_free(c->linetable);
            c->linetable = NULL;
        }
    }
    *out = c;
    return ERR_OK;
}

static err_t py_code_lookup(py_target *t, uint64_t addr, py_code **out) {
    if (!t->codes) {
        t->codes = util_calloc(1, sizeof *t->codes);
        if (!t->codes) {
            return ERR_NOMEM;
        }
    }
    size_t slot = (size_t)((addr >> 4) % PY_CODE_CACHE_SLOTS);
    if (t->codes->addr[slot] == addr && t->codes->code[slot]) {
        *out = t->codes->code[slot];
        return ERR_OK;
    }
    py_code *c;
    err_t e = py_code_load(t, addr, &c);
    if (e != ERR_OK) {
        return e;
    }
    py_code_free(t->codes->code[slot]);
    t->codes->code[slot] = c;
    t->codes->addr[slot] = addr;
    *out = c;
    return ERR_OK;
}

err_t py_code_get(py_target *t, uint64_t addr, const py_code **out) {
    py_code *c = NULL;
    err_t e = py_code_lookup(t, addr, &c);
    *out = c;
    return e;
}

static bool lt_varint(const uint8_t *p, size_t n, size_t *i, uint32_t *out) {
    uint32_t v = 0;
    for (int shift = 0; *i < n && shift < 32; shift += 6) {
        uint8_t b = p[(*i)++];
        v |= (uint32_t)(b & 63) << shift;
        if (!(b & 64)) {
            *out = v;
            return true;
        }
    }
    return false;
}

static bool lt_svarint(const uint8_t *p, size_t n, size_t *i, int32_t *out) {
    uint32_t v;
    if (!lt_varint(p, n, i, &v)) {
        return false;
    }
    *out = (v & 1) ? -(int32_t)(v >> 1) : (int32_t)(v >> 1);
    return true;
}

int py_code_line(const py_code *c, int64_t idx) {
    if (idx < 0) {
        return c->firstlineno; /* before the first instruction, as CPython says */
    }
    const uint8_t *p = c->linetable;
    size_t n = c->linetable_len, i = 0;
    int64_t line = c->firstlineno; /* 64 bits: deltas from the target may overflow an int */
    int64_t start = 0;
    while (i < n) {
        uint8_t first = p[i++];
        if (!(first & 0x80)) {
            return -1; /* not at an entry start: damaged table */
        }
        int code = (first >> 3) & 15, length = (first & 7) + 1;
        int32_t delta = 0;
        bool has_line = true;
        uint32_t skip;
        switch (code) {
        case 15:
            has_line = false;
            break;
        case 14:
            if (!lt_svarint(p, n, &i, &delta) || !lt_varint(p, n, &i, &skip) ||
                !lt_varint(p, n, &i, &skip) || !lt_varint(p, n, &i, &skip)) {
                return -1;
            }
            break;
        case 13:
            if (!lt_svarint(p, n, &i, &delta)) {
                return -1;
            }
            break;
        case 10:
        case 11:
        case 12:
            delta = code - 10;
            i += 2;
            break;
        default:
            i += 1;
            break;
        }
        line += delta;
        if (idx < start + length) {
            return has_line && line >= 0 && line <= INT32_MAX ? (int)line : -1;
        }
        start += length;
    }
    return -1;
}

/* py_code_line through the code's memo: a million tasks suspended at the
 * same few instructions would decode its table from the start each. */
static int py_code_line_memo(py_code *c, int64_t idx) {
    for (size_t i = 0; i < PY_CODE_LINE_MEMO; i++) {
        if (c->memo_idx[i] == idx + 1) {
            return c->memo_line[i];
        }
    }
    int line = py_code_line(c, idx);
    size_t at = c->memo_next++ % PY_CODE_LINE_MEMO;
    c->memo_idx[at] = idx + 1;
    c->memo_line[at] = line;
    return line;
}

/* The frame but its line, and its code. */
static err_t py_frame_read_code(py_target *t, uint64_t addr, py_frame *out, py_code **code_out) {
    const py_layout *L = &t->L;
    uint8_t b[256];
    memset(out, 0, sizeof *out);
    out->addr = addr;
    out->line = -1;
    out->nlocalsplus = out->stack_depth = -1;
    if (L->fr_size > sizeof b || (addr & 7) || mem_read(t->m, addr, L->fr_size, b) != ERR_OK) {
        return ERR_READ;
    }
    out->previous = rd_u64(b, (size_t)L->fr_previous);
    out->owner = rd_u8(b, (size_t)L->fr_owner);
    out->instr = rd_u64(b, (size_t)L->fr_instr);
    uint64_t code = py_stackref_obj(t, rd_u64(b, (size_t)L->fr_code));
    out->raw_code = code;
    uint64_t type;
    if (out->owner >= L->fr_owner_first_nonpy || !code || py_type_of(t, code, &type) != ERR_OK ||
        type != t->types.code) {
        return ERR_OK; /* a shim, entry or C-stack frame: not Python code */
    }
    py_code *c;
    err_t e = py_code_lookup(t, code, &c);
    if (e != ERR_OK) {
        return e;
    }
    out->code = code;
    out->is_python = true;
    out->qualname = c->qualname;
    out->filename = c->filename;
    out->nlocalsplus = c->nlocalsplus;
    size_t word = L->fr_stack_is_ptr ? 8 : 4;
    if (L->fr_stack != PY_NONE && (size_t)L->fr_stack + word <= L->fr_size) {
        uint64_t w = word == 8 ? rd_u64(b, (size_t)L->fr_stack) : rd_u32(b, (size_t)L->fr_stack);
        out->stack_depth = py_frame_depth_of(L, addr, w, c->nlocalsplus);
    }
    if (code_out) {
        *code_out = c;
    }
    return ERR_OK;
}

err_t py_frame_read(py_target *t, uint64_t addr, py_frame *out) {
    const py_layout *L = &t->L;
    py_code *c = NULL;
    err_t e = py_frame_read_code(t, addr, out, &c);
    if (e != ERR_OK || !out->code) {
        return e;
    }
    uint64_t code = out->code;
    uint64_t base = code + (uint64_t)L->co_code_adaptive;
    /* 3.11/3.12 keep the last executed instruction (base - 2 before the
     * first); 3.13+ the current one. Both index the line table alike. */
    if (out->instr >= base && out->instr - base <= PY_CODE_BYTES_MAX) {
        out->line = py_code_line_memo(c, (int64_t)((out->instr - base) / 2));
    } else if (L->fr_instr_is_last && out->instr < base && base - out->instr <= 2) {
        out->line = py_code_line(c, -1);
    }
    return ERR_OK;
}

/* How far below a frame we look for its predecessor: a frame's size is its
 * code's locals plus stack, a few hundred words at most in practice. */
#define PY_FRAME_BELOW_SCAN_WORDS 8192

err_t py_frame_find_below(py_target *t, uint64_t anchor, uint64_t *found) {
    const py_layout *L = &t->L;
    if (L->co_framesize == PY_NONE || (anchor & 7)) {
        return ERR_NOT_FOUND;
    }
    for (uint64_t words = L->fr_size / 8; words < PY_FRAME_BELOW_SCAN_WORDS; words++) {
        uint64_t cand = anchor - words * 8;
        uint64_t slot, type;
        uint32_t framesize;
        if (mem_read_u64(t->m, cand + (uint64_t)L->fr_code, &slot) != ERR_OK) {
            return ERR_NOT_FOUND; /* ran off the mapped data stack */
        }
        uint64_t code = py_stackref_obj(t, slot);
        if (!code || (code & 7) || py_type_of(t, code, &type) != ERR_OK ||
            type != t->types.code ||
            mem_read_u32(t->m, code + (uint64_t)L->co_framesize, &framesize) != ERR_OK ||
            framesize != words) {
            continue;
        }
        uint8_t owner;
        if (mem_read(t->m, cand + (uint64_t)L->fr_owner, 1, &owner) == ERR_OK &&
            owner == PY_FRAME_OWNED_BY_THREAD) {
            *found = cand;
            return ERR_OK;
        }
    }
    return ERR_NOT_FOUND;
}
