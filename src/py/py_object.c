/* Bounded readers for builtin objects: str (all kinds), int, tuple, list,
 * dict (combined, split, inline values, managed dicts), set, deque, and
 * instance attributes and modules built on them. Every count from the target
 * is capped before use; a failure marks the object, never the caller. */
#include "py.h"

#include <stdio.h>
#include <string.h>

/* Type flags (identical 3.11-3.15). */
#define PY_TPFLAGS_MANAGED_DICT (1ul << 4)
#define PY_TPFLAGS_INLINE_VALUES (1ul << 2)
#define PY_TPFLAGS_HEAPTYPE (1ul << 9)
#define PY_TPFLAGS_LONG_SUBCLASS (1ul << 24)
#define PY_TPFLAGS_UNICODE_SUBCLASS (1ul << 28)
#define PY_TPFLAGS_DICT_SUBCLASS (1ul << 29)
/* Longest type name we keep. */
#define PY_TYPE_NAME_MAX 128
/* Largest dict hash table we walk (log2 of its size). */
#define PY_DICT_LOG2_MAX 26

uint64_t py_stackref_obj(const py_target *t, uint64_t bits) {
    if (!t->L.stackref_tagged) {
        return bits;
    }
    /* (bits & 3) == 3 is a tagged int, bits == 1 is NULL; objects are
     * 8-aligned so masking both tag bits is safe. */
    if ((bits & 3) == 3) {
        return 0;
    }
    return bits & ~(uint64_t)3;
}

err_t py_type_of(py_target *t, uint64_t obj, uint64_t *type) {
    if (!obj || (obj & 7)) {
        return ERR_CORRUPT;
    }
    return mem_read_u64(t->m, obj + (uint64_t)t->L.ob_type, type);
}

err_t py_type_name(py_target *t, uint64_t type, char *buf, size_t cap) {
    uint64_t name;
    if (mem_read_u64(t->m, type + (uint64_t)t->L.tp_name, &name) != ERR_OK || !name) {
        snprintf(buf, cap, "?");
        return ERR_READ;
    }
    return py_read_cstr(t, name, buf, cap < PY_TYPE_NAME_MAX ? cap : PY_TYPE_NAME_MAX);
}

err_t py_read_cstr(py_target *t, uint64_t addr, char *buf, size_t cap) {
    char raw[PY_CSTR_MAX + 1];
    if (cap == 0) {
        return ERR_OK;
    }
    /* Raw bytes past cap could not fit escaped either. */
    err_t e = mem_read_cstr(t->m, addr, raw, cap < sizeof raw ? cap : sizeof raw);
    util_escape_buf(buf, cap, raw, strlen(raw), 0); /* raw bytes of the target: make them text */
    return e;
}

uint64_t py_type_flags(py_target *t, uint64_t type) {
    uint64_t flags = 0;
    mem_read_u64(t->m, type + (uint64_t)t->L.tp_flags, &flags);
    return flags;
}

static err_t py_read_str_as(py_target *t, uint64_t obj, sbuf *out, size_t max_chars, bool *cut,
                            unsigned esc) {
    const py_layout *L = &t->L;
    uint8_t hdr[96];
    size_t hdr_len = (size_t)L->str_legacy_data + 8;
    if (cut) {
        *cut = false;
    }
    if (!obj || (obj & 7) || hdr_len > sizeof hdr) {
        return ERR_CORRUPT;
    }
    /* The header of a short compact ASCII string may end within a page; read
     * its fixed part first. */
    if (mem_read(t->m, obj, (size_t)L->str_ascii_data, hdr) != ERR_OK) {
        return ERR_READ;
    }
    uint64_t type = rd_u64(hdr, (size_t)L->ob_type);
    if (type != t->types.str && !(py_type_flags(t, type) & PY_TPFLAGS_UNICODE_SUBCLASS)) {
        return ERR_CORRUPT;
    }
    int64_t length = (int64_t)rd_u64(hdr, (size_t)L->str_length);
    uint32_t state = rd_u32(hdr, (size_t)L->str_state);
    unsigned kind = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
    if (length < 0 || (kind != 1 && kind != 2 && kind != 4)) {
        return ERR_CORRUPT;
    }
    uint64_t data;
    if (compact && ascii) {
        data = obj + (uint64_t)L->str_ascii_data;
    } else if (compact) {
        data = obj + (uint64_t)L->str_compact_data;
    } else if (mem_read_u64(t->m, obj + (uint64_t)L->str_legacy_data, &data) != ERR_OK || !data) {
        return ERR_READ;
    }
    size_t n = (size_t)length;
    if (n > max_chars) {
        n = max_chars;
        if (cut) {
            *cut = true;
        }
    }
    uint8_t chunk[1024];
    size_t done = 0;
    while (done < n) {
        size_t take = (n - done) * kind > sizeof chunk ? sizeof chunk / kind : n - done;
        if (mem_read(t->m, data + done * kind, take * kind, chunk) != ERR_OK) {
            return ERR_READ;
        }
        for (size_t i = 0; i < take; i++) {
            /* A run of printable ASCII goes in whole: task names are read
             * a million times, and one call per character was a twentieth
             * of `tasks`. */
            size_t run = 0;
            while (kind == 1 && !(esc & UTIL_ESC_REPR) && i + run < take &&
                   chunk[i + run] >= 0x20 && chunk[i + run] < 0x7F) {
                run++;
            }
            if (run) {
                sbuf_add(out, (const char *)chunk + i, run);
                i += run - 1;
                continue;
            }
            uint32_t cp = kind == 1   ? chunk[i]
                          : kind == 2 ? rd_u16(chunk, i * 2)
                                      : rd_u32(chunk, i * 4);
            if (cp >= 0x20 && cp < 0x7F && !(esc & UTIL_ESC_REPR)) {
                sbuf_addc(out, (char)cp);
            } else {
                util_escape_cp(out, cp, esc);
            }
        }
        done += take;
    }
    return out->oom ? ERR_NOMEM : ERR_OK;
}

err_t py_read_str(py_target *t, uint64_t obj, sbuf *out, size_t max_chars, bool *cut) {
    return py_read_str_as(t, obj, out, max_chars, cut, 0);
}

err_t py_read_str_repr(py_target *t, uint64_t obj, sbuf *out, size_t max_chars, bool *cut) {
    return py_read_str_as(t, obj, out, max_chars, cut, UTIL_ESC_REPR);
}

err_t py_read_str_buf(py_target *t, uint64_t obj, char *buf, size_t cap) {
    sbuf b;
    sbuf_init(&b);
    err_t e = py_read_str(t, obj, &b, cap, NULL);
    if (e == ERR_OK && cap) {
        /* Cut on a character and escape boundary so the result stays
         * valid text that says what it says. */
        size_t n = b.oom ? 0 : util_escape_cut(b.data, b.len, cap - 1);
        memcpy(buf, sbuf_str(&b), n);
        buf[n] = '\0';
    } else if (cap) {
        buf[0] = '\0';
    }
    sbuf_free(&b);
    return e;
}

err_t py_read_long(py_target *t, uint64_t obj, int64_t *out) {
    const py_layout *L = &t->L;
    uint8_t b[48];
    if (!obj || mem_read(t->m, obj, (size_t)L->long_digits + 4, b) != ERR_OK) {
        return ERR_READ;
    }
    uint64_t type = rd_u64(b, (size_t)L->ob_type);
    if (type != t->types.long_ && type != t->types.bool_ &&
        !(py_type_flags(t, type) & PY_TPFLAGS_LONG_SUBCLASS)) {
        return ERR_CORRUPT;
    }
    int64_t ndigits;
    int sign;
    if (L->long_lvtag) {
        uint64_t tag = rd_u64(b, (size_t)L->long_size);
        ndigits = (int64_t)(tag >> 3);
        sign = (tag & 3) == 0 ? 1 : (tag & 3) == 1 ? 0 : -1;
    } else {
        int64_t size = (int64_t)rd_u64(b, (size_t)L->long_size);
        ndigits = size == INT64_MIN ? INT64_MAX : size < 0 ? -size : size;
        sign = size < 0 ? -1 : size > 0;
    }
    if (ndigits > PY_LONG_DIGITS_MAX) {
        return ERR_LIMIT;
    }
    uint32_t digits[PY_LONG_DIGITS_MAX] = {0};
    if (ndigits &&
        mem_read(t->m, obj + (uint64_t)L->long_digits, (size_t)ndigits * 4, digits) != ERR_OK) {
        return ERR_READ;
    }
    uint64_t v = 0;
    for (int64_t i = ndigits - 1; i >= 0; i--) {
        if (v >> 33) {
            return ERR_LIMIT; /* more than 63 bits */
        }
        v = (v << 30) | (digits[i] & 0x3FFFFFFF);
    }
    if (v >> 63) {
        return ERR_LIMIT;
    }
    *out = sign < 0 ? -(int64_t)v : sign == 0 ? 0 : (int64_t)v;
    return ERR_OK;
}

err_t py_read_words(py_target *t, uint64_t at, uint64_t n, vec *out) {
    if (n > PY_CONTAINER_MAX) {
        return ERR_LIMIT;
    }
    /* Read in pages' worth of pointers: big containers need few reads. */
    uint64_t chunk[512];
    for (uint64_t done = 0; done < n;) {
        size_t take = n - done > ARRAY_LEN(chunk) ? ARRAY_LEN(chunk) : (size_t)(n - done);
        if (mem_read(t->m, at + done * 8, take * 8, chunk) != ERR_OK) {
            return ERR_READ;
        }
        for (size_t i = 0; i < take; i++) {
            uint64_t *slot = vec_push(out);
            if (!slot) {
                return ERR_NOMEM;
            }
            *slot = chunk[i];
        }
        done += take;
    }
    return ERR_OK;
}

err_t py_tuple_items(py_target *t, uint64_t obj, vec *out) {
    uint64_t n;
    if (mem_read_u64(t->m, obj + (uint64_t)t->L.ob_size, &n) != ERR_OK) {
        return ERR_READ;
    }
    return py_read_words(t, obj + (uint64_t)t->L.tuple_items, n, out);
}

err_t py_list_items(py_target *t, uint64_t obj, vec *out) {
    uint8_t b[40];
    if (mem_read(t->m, obj, sizeof b, b) != ERR_OK) {
        return ERR_READ;
    }
    uint64_t n = rd_u64(b, (size_t)t->L.ob_size), items = rd_u64(b, (size_t)t->L.list_items);
    uint64_t allocated = rd_u64(b, (size_t)t->L.list_allocated);
    if (n > allocated || (n && !items)) {
        return ERR_CORRUPT;
    }
    return py_read_words(t, items, n, out);
}

err_t py_set_items(py_target *t, uint64_t obj, vec *out) {
    uint8_t b[48];
    if (mem_read(t->m, obj, sizeof b, b) != ERR_OK) {
        return ERR_READ;
    }
    uint64_t used = rd_u64(b, (size_t)t->L.set_used), mask = rd_u64(b, (size_t)t->L.set_mask);
    uint64_t table = rd_u64(b, (size_t)t->L.set_table);
    /* mask + 1 is a power of two and the table is never full. */
    if (mask >= PY_CONTAINER_MAX || ((mask + 1) & mask) || used > mask + 1 || !table) {
        return ERR_CORRUPT;
    }
    uint64_t chunk[512]; /* 256 entries of {key, hash} */
    for (uint64_t i = 0; i <= mask;) {
        size_t take = mask + 1 - i > 256 ? 256 : (size_t)(mask + 1 - i);
        if (mem_read(t->m, table + i * 16, take * 16, chunk) != ERR_OK) {
            return ERR_READ;
        }
        for (size_t k = 0; k < take; k++) {
            uint64_t key = chunk[2 * k];
            int64_t hash = (int64_t)chunk[2 * k + 1];
            /* Empty slots hold NULL; deleted ones the dummy key with hash -1. */
            if (!key || hash == -1) {
                continue;
            }
            uint64_t *slot = vec_push(out);
            if (!slot) {
                return ERR_NOMEM;
            }
            *slot = key;
        }
        i += take;
    }
    return ERR_OK;
}

/* A deque block holds 64 items between its left and right links. */
#define PY_DEQUE_BLOCKLEN 64

err_t py_deque_items(py_target *t, uint64_t obj, vec *out) {
    uint8_t b[56];
    if (mem_read(t->m, obj, sizeof b, b) != ERR_OK) {
        return ERR_READ;
    }
    int64_t n = (int64_t)rd_u64(b, (size_t)t->L.ob_size);
    uint64_t block = rd_u64(b, (size_t)t->L.deque_left);
    uint64_t right = rd_u64(b, (size_t)t->L.deque_right);
    int64_t index = (int64_t)rd_u64(b, (size_t)t->L.deque_leftindex);
    int64_t rightindex = (int64_t)rd_u64(b, (size_t)t->L.deque_rightindex);
    if (n < 0 || n > PY_CONTAINER_MAX || index < 0 || index >= PY_DEQUE_BLOCKLEN ||
        rightindex < -1 || rightindex >= PY_DEQUE_BLOCKLEN) {
        return ERR_CORRUPT;
    }
    /* A deque of n items from leftindex spans this many blocks; a chain that
     * needs more, or ends anywhere but at rightblock/rightindex, is damaged
     * (a cycle included). */
    uint64_t blocks_needed = (uint64_t)(index + n + PY_DEQUE_BLOCKLEN - 1) / PY_DEQUE_BLOCKLEN;
    uint64_t blk[1 + PY_DEQUE_BLOCKLEN + 1];
    for (uint64_t nb = 0; n > 0; nb++) {
        if (nb >= blocks_needed || !block) {
            return ERR_CORRUPT;
        }
        if (mem_read(t->m, block, sizeof blk, blk) != ERR_OK) {
            return ERR_READ;
        }
        if (block == right && index + n - 1 != rightindex) {
            return ERR_CORRUPT;
        }
        for (; index < PY_DEQUE_BLOCKLEN && n > 0; index++, n--) {
            uint64_t *slot = vec_push(out);
            if (!slot) {
                return ERR_NOMEM;
            }
            *slot = blk[1 + index];
        }
        if (n > 0) {
            block = blk[1 + PY_DEQUE_BLOCKLEN];
        }
        index = 0;
    }
    return ERR_OK;
}

/* Walks the entries of a keys object; values come from the entries or, for a
 * split table, from the values array. Appends key, value pairs. */
static err_t py_keys_items(py_target *t, uint64_t keys, uint64_t values, vec *out) {
    uint8_t kh[32];
    if (!keys || mem_read(t->m, keys, sizeof kh, kh) != ERR_OK) {
        return ERR_READ;
    }
    unsigned log2_size = rd_u8(kh, 8), log2_index_bytes = rd_u8(kh, 9), kind = rd_u8(kh, 10);
    int64_t nentries = (int64_t)rd_u64(kh, 24);
    if (log2_size > PY_DICT_LOG2_MAX || log2_index_bytes > PY_DICT_LOG2_MAX + 3 || kind > 2 ||
        nentries < 0 || nentries > ((int64_t)1 << log2_size)) {
        return ERR_CORRUPT;
    }
    size_t esize = kind == 0 ? 24 : 16;
    uint64_t entries = keys + 32 + ((uint64_t)1 << log2_index_bytes);
    vec vals;
    vec_init(&vals, sizeof(uint64_t));
    err_t e = ERR_OK;
    if (values) {
        e = py_read_words(t, values + (uint64_t)t->L.dict_values_array, (uint64_t)nentries, &vals);
    }
    uint8_t chunk[24 * 128];
    for (int64_t i = 0; e == ERR_OK && i < nentries;) {
        size_t take = nentries - i > 128 ? 128 : (size_t)(nentries - i);
        if (mem_read(t->m, entries + (uint64_t)i * esize, take * esize, chunk) != ERR_OK) {
            e = ERR_READ;
            break;
        }
        for (size_t k = 0; k < take; k++) {
            size_t base = k * esize + (kind == 0 ? 8 : 0);
            uint64_t key = rd_u64(chunk, base);
            uint64_t value =
                values ? *VEC_AT(&vals, uint64_t, (size_t)i + k) : rd_u64(chunk, base + 8);
            if (!key || !value) {
                continue; /* deleted entry or absent split value */
            }
            uint64_t *slot = vec_push(out), *slot2 = slot ? vec_push(out) : NULL;
            if (!slot2) {
                e = ERR_NOMEM;
                break;
            }
            *VEC_AT(out, uint64_t, out->len - 2) = key;
            *VEC_AT(out, uint64_t, out->len - 1) = value;
        }
        i += (int64_t)take;
    }
    vec_free(&vals);
    return e;
}

err_t py_keys_values_items(py_target *t, uint64_t keys, uint64_t values, vec *out) {
    return py_keys_items(t, keys, values, out);
}

err_t py_dict_items(py_target *t, uint64_t obj, vec *out) {
    uint8_t b[48];
    if (!obj || mem_read(t->m, obj, sizeof b, b) != ERR_OK) {
        return ERR_READ;
    }
    uint64_t type = rd_u64(b, (size_t)t->L.ob_type);
    if (type != t->types.dict && !(py_type_flags(t, type) & PY_TPFLAGS_DICT_SUBCLASS)) {
        return ERR_CORRUPT;
    }
    return py_keys_items(t, rd_u64(b, (size_t)t->L.dict_keys), rd_u64(b, (size_t)t->L.dict_values),
                         out);
}

/* Compares a str object in the target with a C string without decoding
 * non-ASCII text. */
static bool py_str_equals(py_target *t, uint64_t obj, const char *s) {
    char buf[256];
    size_t n = strlen(s), points = 0;
    for (size_t i = 0; i < n; i++) {
        points += ((uint8_t)s[i] & 0xC0) != 0x80; /* UTF-8: not a continuation byte */
    }
    uint64_t length;
    /* The length first: a lookup in sys.modules meets hundreds of keys,
     * and few of them have as many code points as the one it wants. */
    if (!obj || mem_read_u64(t->m, obj + (uint64_t)t->L.str_length, &length) != ERR_OK ||
        length != points) {
        return false;
    }
    if (n >= sizeof buf - 1 || py_read_str_buf(t, obj, buf, n + 2) != ERR_OK) {
        return false;
    }
    return strcmp(buf, s) == 0;
}

static err_t py_items_lookup(py_target *t, const vec *items, const char *key, uint64_t *value) {
    for (size_t i = 0; i + 1 < items->len; i += 2) {
        if (py_str_equals(t, *VEC_AT(items, uint64_t, i), key)) {
            *value = *VEC_AT(items, uint64_t, i + 1);
            return ERR_OK;
        }
    }
    return ERR_OK;
}

err_t py_dict_get_str(py_target *t, uint64_t dict, const char *key, uint64_t *value) {
    *value = 0;
    vec items;
    vec_init(&items, sizeof(uint64_t));
    err_t e = py_dict_items(t, dict, &items);
    if (e == ERR_OK) {
        e = py_items_lookup(t, &items, key, value);
    }
    vec_free(&items);
    return e;
}

err_t py_attr(py_target *t, uint64_t obj, const char *name, uint64_t *value) {
    const py_layout *L = &t->L;
    *value = 0;
    uint64_t type;
    if (py_type_of(t, obj, &type) != ERR_OK) {
        return ERR_READ;
    }
    uint64_t flags = py_type_flags(t, type);
    uint64_t dict = 0, values = 0;
    if (flags & PY_TPFLAGS_MANAGED_DICT) {
        uint64_t w = 0, w2 = 0;
        if (mem_read_u64(t->m, obj - 24, &w) != ERR_OK) {
            return ERR_READ;
        }
        switch (L->managed) {
        case PY_MANAGED_311:
            dict = w;
            if (!dict && mem_read_u64(t->m, obj - 32, &w2) == ERR_OK) {
                values = w2;
            }
            break;
        case PY_MANAGED_312:
            /* Bit 0 tags a values pointer stored as (values - 1). */
            if (w & 1) {
                values = w + 1;
            } else {
                dict = w;
            }
            break;
        case PY_MANAGED_INLINE:
            dict = w;
            if (!dict && (flags & PY_TPFLAGS_INLINE_VALUES)) {
                uint64_t basicsize;
                uint8_t vh[4];
                if (mem_read_u64(t->m, type + (uint64_t)L->tp_basicsize, &basicsize) == ERR_OK &&
                    basicsize < 4096 && mem_read(t->m, obj + basicsize, 4, vh) == ERR_OK &&
                    vh[3] /* valid */) {
                    /* py_keys_items adds dict_values_array (the 8-byte header). */
                    values = obj + basicsize;
                }
            }
            break;
        }
    } else {
        int64_t dictoffset;
        if (mem_read_u64(t->m, type + (uint64_t)L->tp_dictoffset, (uint64_t *)&dictoffset) ==
                ERR_OK &&
            dictoffset > 0 && dictoffset < 4096) {
            mem_read_u64(t->m, obj + (uint64_t)dictoffset, &dict);
        }
    }
    if (dict) {
        return py_dict_get_str(t, dict, name, value);
    }
    if (!values) {
        return ERR_OK;
    }
    uint64_t keys;
    if (!(flags & PY_TPFLAGS_HEAPTYPE) ||
        mem_read_u64(t->m, type + (uint64_t)L->ht_cached_keys, &keys) != ERR_OK || !keys) {
        return ERR_CORRUPT;
    }
    vec items;
    vec_init(&items, sizeof(uint64_t));
    err_t e = py_keys_items(t, keys, values, &items);
    if (e == ERR_OK) {
        e = py_items_lookup(t, &items, name, value);
    }
    vec_free(&items);
    return e;
}

err_t py_module(py_target *t, uint64_t interp, const char *name, uint64_t *module) {
    uint64_t modules;
    *module = 0;
    if (mem_read_u64(t->m, interp + (uint64_t)t->L.is_modules, &modules) != ERR_OK || !modules) {
        return ERR_READ;
    }
    return py_dict_get_str(t, modules, name, module);
}
