/* Builders for hand-made CPython objects in a synthetic memory image, laid
 * out with the same built-in layout table the readers use, so each test
 * states only what it varies. */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

/* Objects go here, far from the addresses the memory tests use. */
#define FX_HEAP_BASE 0x10000000ull
/* Unmapped bytes left after each object so overreads fail. */
#define FX_GAP 64
/* Slots in the keys objects fx_keys builds (log2 3) and entries they may
 * hold (CPython's usable fraction, 2/3 of the slots). */
#define FX_KEYS_LOG2 3
#define FX_KEYS_USABLE 5

const int fx_minors[3] = {11, 12, 14};

void fx_w64(uint8_t *buf, size_t off, uint64_t v) {
    memcpy(buf + off, &v, sizeof v);
}

void fx_w32(uint8_t *buf, size_t off, uint32_t v) {
    memcpy(buf + off, &v, sizeof v);
}

void fx_w16(uint8_t *buf, size_t off, uint16_t v) {
    memcpy(buf + off, &v, sizeof v);
}

void fx_put_at(fx *f, uint64_t addr, const void *data, size_t len) {
    CHECK_ERR(mem_image_add(f->t.m, addr, data, len), ERR_OK);
}

uint64_t fx_put(fx *f, const void *data, size_t len) {
    uint64_t addr = (f->next + 15) & ~(uint64_t)15;
    f->next = addr + len + FX_GAP;
    fx_put_at(f, addr, data, len);
    return addr;
}

uint64_t fx_type(fx *f, uint64_t flags, uint64_t basicsize) {
    uint8_t b[FX_TYPE_SIZE] = {0};
    fx_w64(b, (size_t)f->t.L.ob_refcnt, 1);
    fx_w64(b, (size_t)f->t.L.tp_flags, flags);
    fx_w64(b, (size_t)f->t.L.tp_basicsize, basicsize);
    return fx_put(f, b, sizeof b);
}

bool fx_open(fx *f, int minor) {
    memset(f, 0, sizeof *f);
    unit_ctx("3.%d", minor);
    f->t.err = &f->err;
    f->next = FX_HEAP_BASE;
    if (!py_layout_builtin(minor, &f->t.L)) {
        return false;
    }
    f->t.m = mem_image_open(&f->err);
    if (!f->t.m) {
        return false;
    }
    snprintf(f->t.version, sizeof f->t.version, "3.%d.0", minor);
    py_types *ty = &f->t.types;
    uint64_t *all[] = {&ty->code, &ty->str,  &ty->long_, &ty->bool_, &ty->tuple,
                       &ty->list, &ty->dict, &ty->set,   &ty->bytes, &ty->type};
    for (size_t i = 0; i < ARRAY_LEN(all); i++) {
        *all[i] = fx_type(f, 0, 0);
    }
    return true;
}

void fx_close(fx *f) {
    py_close(&f->t);
    mem_close(f->t.m);
    f->t.m = NULL;
}

static uint8_t *fx_obj(fx *f, size_t len, uint64_t type) {
    uint8_t *b = calloc(1, len);
    if (b) {
        fx_w64(b, (size_t)f->t.L.ob_refcnt, 1);
        fx_w64(b, (size_t)f->t.L.ob_type, type);
    }
    return b;
}

static uint64_t fx_put_free(fx *f, uint8_t *b, size_t len) {
    if (!CHECK(b != NULL)) {
        return 0;
    }
    uint64_t a = fx_put(f, b, len);
    free(b);
    return a;
}

uint64_t fx_str_cp(fx *f, unsigned kind, bool ascii, const uint32_t *cps, size_t n) {
    const py_layout *L = &f->t.L;
    size_t hdr = (size_t)(ascii ? L->str_ascii_data : L->str_compact_data);
    size_t len = hdr + (n + 1) * kind;
    uint8_t *b = fx_obj(f, len, f->t.types.str);
    if (!b) {
        return fx_put_free(f, b, len);
    }
    fx_w64(b, (size_t)L->str_length, n);
    fx_w64(b, 24, UINT64_MAX); /* hash: not computed */
    /* interned:2, kind:3, compact:1, ascii:1; 3.11's ready bit follows. */
    uint32_t state = kind << 2 | 1u << 5 | (ascii ? 1u << 6 : 0) | (L->minor == 11 ? 1u << 7 : 0);
    fx_w32(b, (size_t)L->str_state, state);
    for (size_t i = 0; i < n; i++) {
        if (kind == 1) {
            b[hdr + i] = (uint8_t)cps[i];
        } else if (kind == 2) {
            fx_w16(b, hdr + i * 2, (uint16_t)cps[i]);
        } else {
            fx_w32(b, hdr + i * 4, cps[i]);
        }
    }
    return fx_put_free(f, b, len);
}

uint64_t fx_str(fx *f, const char *s) {
    uint32_t cps[256];
    size_t n = strlen(s);
    if (!CHECK(n < ARRAY_LEN(cps))) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        cps[i] = (unsigned char)s[i];
    }
    return fx_str_cp(f, 1, true, cps, n);
}

uint64_t fx_long_digits(fx *f, int sign, const uint32_t *digits, size_t n) {
    const py_layout *L = &f->t.L;
    size_t len = (size_t)L->long_digits + 4 * (n ? n : 1);
    uint8_t *b = fx_obj(f, len, f->t.types.long_);
    if (!b) {
        return fx_put_free(f, b, len);
    }
    if (L->long_lvtag) {
        /* 3.12+: ndigits << 3 | sign bits (0 positive, 1 zero, 2 negative). */
        uint64_t sbits = sign > 0 ? 0 : sign == 0 ? 1 : 2;
        fx_w64(b, (size_t)L->long_size, (uint64_t)n << 3 | sbits);
    } else {
        int64_t size = sign < 0 ? -(int64_t)n : sign == 0 ? 0 : (int64_t)n;
        fx_w64(b, (size_t)L->long_size, (uint64_t)size);
    }
    for (size_t i = 0; i < n; i++) {
        fx_w32(b, (size_t)L->long_digits + i * 4, digits[i]);
    }
    return fx_put_free(f, b, len);
}

uint64_t fx_long(fx *f, int64_t v) {
    uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    uint32_t digits[3];
    size_t n = 0;
    while (mag) {
        digits[n++] = (uint32_t)(mag & 0x3FFFFFFF);
        mag >>= 30;
    }
    return fx_long_digits(f, v < 0 ? -1 : v > 0, digits, n);
}

uint64_t fx_bytes(fx *f, const uint8_t *data, size_t n) {
    const py_layout *L = &f->t.L;
    size_t len = (size_t)L->bytes_data + n + 1;
    uint8_t *b = fx_obj(f, len, f->t.types.bytes);
    if (!b) {
        return fx_put_free(f, b, len);
    }
    fx_w64(b, (size_t)L->bytes_size, n);
    fx_w64(b, 24, UINT64_MAX); /* ob_shash */
    memcpy(b + L->bytes_data, data, n);
    return fx_put_free(f, b, len);
}

uint64_t fx_keys(fx *f, unsigned kind, const uint64_t *keys, const uint64_t *values, size_t n) {
    if (!CHECK(n <= FX_KEYS_USABLE)) {
        return 0;
    }
    size_t nslots = (size_t)1 << FX_KEYS_LOG2;
    size_t esize = kind == 0 ? 24 : 16;
    size_t entries = 32 + nslots; /* header, then one byte per index */
    size_t len = entries + (n ? n : 1) * esize;
    uint8_t *b = calloc(1, len);
    if (!b) {
        return fx_put_free(f, b, len);
    }
    fx_w64(b, 0, 1);                   /* dk_refcnt */
    b[8] = FX_KEYS_LOG2;               /* dk_log2_size */
    b[9] = FX_KEYS_LOG2;               /* dk_log2_index_bytes: 8 one-byte indices */
    b[10] = (uint8_t)kind;             /* dk_kind */
    fx_w32(b, 12, 1);                  /* dk_version */
    fx_w64(b, 16, FX_KEYS_USABLE - n); /* dk_usable */
    fx_w64(b, 24, n);                  /* dk_nentries */
    memset(b + 32, 0xff, nslots);      /* DKIX_EMPTY */
    for (size_t i = 0; i < n; i++) {
        b[32 + i] = (uint8_t)i;
        size_t e = entries + i * esize;
        if (kind == 0) {
            fx_w64(b, e, 1000 + i); /* me_hash */
            e += 8;
        }
        fx_w64(b, e, keys[i]);
        fx_w64(b, e + 8, values ? values[i] : 0);
    }
    return fx_put_free(f, b, len);
}

uint64_t fx_dict(fx *f, uint64_t keys, uint64_t values) {
    const py_layout *L = &f->t.L;
    uint8_t *b = fx_obj(f, 48, f->t.types.dict);
    if (b) {
        fx_w64(b, (size_t)L->dict_keys, keys);
        fx_w64(b, (size_t)L->dict_values, values);
    }
    return fx_put_free(f, b, 48);
}

uint64_t fx_values(fx *f, const uint64_t *values, size_t n) {
    size_t pre = (size_t)f->t.L.dict_values_array;
    size_t len = pre + 8 * (n ? n : 1);
    uint8_t *b = calloc(1, len);
    if (!b) {
        return fx_put_free(f, b, len);
    }
    if (pre >= 4) {
        /* 3.13+: capacity, size, embedded, valid. */
        b[0] = (uint8_t)n;
        b[1] = (uint8_t)n;
        b[3] = 1;
    }
    for (size_t i = 0; i < n; i++) {
        fx_w64(b, pre + i * 8, values[i]);
    }
    return fx_put_free(f, b, len);
}
