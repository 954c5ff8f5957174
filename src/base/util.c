/* Implementation of the shared containers and the fault-injecting allocator. */
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <sys/mman.h>

/* Blocks this large (4 MiB) that grow or are zeroed (util_calloc,
 * util_realloc) are asked to be backed by transparent huge pages: they are
 * written whole, and the model's arrays and hash tables at 100k tasks and more are
 * tens of MB, touched once each page, and a page fault per 4 KiB page cost
 * half of `check`'s time on a virtual machine, one fault per 2 MiB almost
 * nothing. A hint only: the kernel may ignore it. */
#define UTIL_HUGE_MIN (4u << 20)
/* The huge page size the hint aims at. */
#define UTIL_HUGE_PAGE (2u << 20)

static uint64_t util_alloc_countdown;
static uint64_t util_alloc_count;

void util_fail_alloc_at(uint64_t nth) {
    util_alloc_countdown = nth;
}

uint64_t util_alloc_calls(void) {
    return util_alloc_count;
}

static bool util_alloc_should_fail(void) {
    util_alloc_count++;
    if (util_alloc_countdown == 0) {
        return false;
    }
    return --util_alloc_countdown == 0;
}

static void *util_huge(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
    if (p && n >= UTIL_HUGE_MIN) {
        uintptr_t start = ((uintptr_t)p + UTIL_HUGE_PAGE - 1) & ~(uintptr_t)(UTIL_HUGE_PAGE - 1);
        uintptr_t end = ((uintptr_t)p + n) & ~(uintptr_t)(UTIL_HUGE_PAGE - 1);
        if (end > start) {
            madvise((void *)start, end - start, MADV_HUGEPAGE);
        }
    }
#endif
    return p;
}

/* Not hinted: the page cache and object bodies are read into here, and a
 * cache touched a line at a time would take 2 MiB per line. */
void *util_alloc(size_t n) {
    return util_alloc_should_fail() ? NULL : malloc(n ? n : 1);
}

void *util_calloc(size_t n, size_t size) {
    if (util_alloc_should_fail()) {
        return NULL;
    }
    n = n ? n : 1;
    size = size ? size : 1;
    if (n > SIZE_MAX / size) {
        return NULL;
    }
    if (n * size < UTIL_HUGE_MIN) {
        return calloc(n, size);
    }
    /* The hint before the zeroing, which is what touches the pages. */
    void *p = util_huge(malloc(n * size), n * size);
    return p ? memset(p, 0, n * size) : NULL;
}

void *util_realloc(void *p, size_t n) {
    if (util_alloc_should_fail()) {
        return NULL;
    }
    n = n ? n : 1;
    size_t old = p ? malloc_usable_size(p) : 0;
    if (n < UTIL_HUGE_MIN || n <= old) {
        return realloc(p, n);
    }
    /* Growing into a large block: the hint before the copy, which is what
     * touches the new pages. */
    void *q = util_huge(malloc(n), n);
    if (q && p) {
        memcpy(q, p, old);
        free(p);
    }
    return q;
}

void *util_alloc_huge(size_t n) {
    return util_alloc_should_fail() ? NULL : util_huge(malloc(n ? n : 1), n);
}

char *util_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = util_alloc(n);
    if (d) {
        memcpy(d, s, n);
    }
    return d;
}

void util_free(void *p) {
    free(p);
}

void sbuf_init(sbuf *b) {
    memset(b, 0, sizeof *b);
}

void sbuf_free(sbuf *b) {
    util_free(b->data);
    sbuf_init(b);
}

void sbuf_reset(sbuf *b) {
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

static bool sbuf_reserve(sbuf *b, size_t extra) {
    if (b->oom) {
        return false;
    }
    if (b->len + extra + 1 <= b->cap) {
        return true;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        cap *= 2;
    }
    char *d = util_realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void sbuf_add(sbuf *b, const char *s, size_t n) {
    if (!sbuf_reserve(b, n)) {
        return;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sbuf_adds(sbuf *b, const char *s) {
    sbuf_add(b, s, strlen(s));
}

void sbuf_addc(sbuf *b, char c) {
    sbuf_add(b, &c, 1);
}

void sbuf_printf(sbuf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n < sizeof small) {
        sbuf_add(b, small, (size_t)n);
        return;
    }
    if (!sbuf_reserve(b, (size_t)n)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

const char *sbuf_str(sbuf *b) {
    return b->data ? b->data : "";
}

void vec_init(vec *v, size_t elem) {
    memset(v, 0, sizeof *v);
    v->elem = elem <= VEC_LEN_MAX ? (uint32_t)elem : 0; /* 0: every push fails */
}

void vec_free(vec *v) {
    if (!v->in_arena) {
        util_free(v->data);
    }
    v->data = NULL;
    v->len = v->cap = 0;
    v->in_arena = false;
}

bool vec_grow(vec *v) {
    /* Small first allocations: a million tasks each hold a few short
     * vectors, most of them with one or two elements. */
    size_t cap = v->cap ? (size_t)v->cap * 2 : (v->elem >= 32 ? 2 : 4);
    if (cap > VEC_LEN_MAX) {
        cap = VEC_LEN_MAX;
    }
    return cap > v->cap && vec_reserve(v, cap);
}

bool vec_reserve(vec *v, size_t n) {
    if (n <= v->cap) {
        return true;
    }
    if (n > VEC_LEN_MAX || v->elem == 0 || n > SIZE_MAX / v->elem) {
        return false;
    }
    void *d;
    if (v->in_arena) {
        /* The arena keeps its copy; this one is the vector's own. */
        d = util_alloc(n * v->elem);
        if (d && v->len) {
            memcpy(d, v->data, (size_t)v->len * v->elem);
        }
    } else {
        d = util_realloc(v->data, n * v->elem);
    }
    if (!d) {
        return false;
    }
    v->data = d;
    v->cap = (uint32_t)n;
    v->in_arena = false;
    return true;
}

void vec_shrink(vec *v) {
    if (v->len == v->cap || v->len == 0 || v->in_arena) {
        return;
    }
    /* Not through util_realloc: a shrink that fails changes nothing, so
     * the fault injection has nothing to test here. */
    void *d = realloc(v->data, (size_t)v->len * v->elem);
    if (d) {
        v->data = d;
        v->cap = v->len;
    }
}

/* An arena's blocks (64 KiB): a few thousand names or frames each, and
 * a block's unused tail stays small beside it. A request larger than a
 * quarter of a block gets a block of its own. */
#define UTIL_ARENA_BLOCK (64u << 10)
/* What an arena's pieces are aligned to: the widest field of a model's
 * records (uint64_t, pointers). */
#define UTIL_ARENA_ALIGN 8u

void *util_arena_alloc(util_arena *a, size_t n) {
    if (a->blocks.elem == 0) {
        vec_init(&a->blocks, sizeof(char *));
    }
    size_t pad =
        (UTIL_ARENA_ALIGN - ((uintptr_t)a->next & (UTIL_ARENA_ALIGN - 1))) & (UTIL_ARENA_ALIGN - 1);
    if (a->next && n <= a->left && pad <= a->left - n) {
        void *p = a->next + pad;
        a->next += pad + n;
        a->left -= pad + n;
        return p;
    }
    size_t size = n > UTIL_ARENA_BLOCK / 4 ? n : UTIL_ARENA_BLOCK;
    char **slot = vec_push(&a->blocks);
    char *block = slot ? util_alloc(size) : NULL;
    if (!block) {
        if (slot) {
            a->blocks.len--;
        }
        return NULL;
    }
    *slot = block;
    if (size == UTIL_ARENA_BLOCK) {
        /* malloc's blocks are aligned for any type. */
        a->next = block + n;
        a->left = size - n;
    }
    return block;
}

void util_arena_free(util_arena *a) {
    for (size_t i = 0; i < a->blocks.len; i++) {
        util_free(*VEC_AT(&a->blocks, char *, i));
    }
    vec_free(&a->blocks);
    a->next = NULL;
    a->left = 0;
}

bool vec_settle(vec *v, util_arena *a) {
    if (v->in_arena) {
        return true;
    }
    if (v->len == 0) {
        vec_free(v);
        return true;
    }
    size_t n = (size_t)v->len * v->elem;
    void *d = util_arena_alloc(a, n);
    if (!d) {
        return false;
    }
    memcpy(d, v->data, n);
    util_free(v->data);
    v->data = d;
    v->cap = v->len;
    v->in_arena = true;
    return true;
}

/* util_sort_u64's digits: 11 bits, four passes over the 44 bits in which a
 * heap's addresses differ, and a count table (16 KiB) that stays in the
 * processor's cache. */
#define UTIL_SORT_BITS 11
#define UTIL_SORT_RADIX (1u << UTIL_SORT_BITS)

bool util_sort_u64(uint64_t *keys, uint8_t *extra, size_t n) {
    uint64_t differ = 0;
    for (size_t i = 1; i < n; i++) {
        differ |= keys[i] ^ keys[0];
    }
    if (!differ) {
        return true;
    }
    uint64_t *tmp = util_alloc(n * sizeof *tmp);
    uint8_t *tmp_extra = extra ? util_alloc(n) : NULL;
    size_t *count = util_alloc(UTIL_SORT_RADIX * sizeof *count);
    bool ok = tmp && count && (!extra || tmp_extra);
    int lo = __builtin_ctzll(differ), hi = 64 - __builtin_clzll(differ);
    for (int shift = lo; ok && shift < hi; shift += UTIL_SORT_BITS) {
        memset(count, 0, UTIL_SORT_RADIX * sizeof *count);
        for (size_t i = 0; i < n; i++) {
            count[(keys[i] >> shift) & (UTIL_SORT_RADIX - 1)]++;
        }
        for (size_t d = 0, sum = 0; d < UTIL_SORT_RADIX; d++) {
            size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            size_t at = count[(keys[i] >> shift) & (UTIL_SORT_RADIX - 1)]++;
            tmp[at] = keys[i];
            if (extra) {
                tmp_extra[at] = extra[i];
            }
        }
        memcpy(keys, tmp, n * sizeof *keys);
        if (extra) {
            memcpy(extra, tmp_extra, n);
        }
    }
    util_free(tmp);
    util_free(tmp_extra);
    util_free(count);
    return ok;
}

bool u64vec_push(vec *v, uint64_t x) {
    uint64_t *slot = vec_push(v);
    if (slot) {
        *slot = x;
    }
    return slot != NULL;
}

bool u64vec_has(const vec *v, uint64_t x) {
    for (size_t i = 0; i < v->len; i++) {
        if (((const uint64_t *)v->data)[i] == x) {
            return true;
        }
    }
    return false;
}

bool u64vec_add_unique(vec *v, uint64_t x) {
    return u64vec_has(v, x) || u64vec_push(v, x);
}

void u64set_init(u64set *s) {
    memset(s, 0, sizeof *s);
}

void u64set_free(u64set *s) {
    util_free(s->keys);
    u64set_init(s);
}

static size_t u64set_slot(uint64_t key, size_t cap) {
    /* Addresses are 8-aligned; mix the bits so neighbours spread out. */
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

static bool u64set_grow(u64set *s) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    uint64_t *keys = util_calloc(cap, sizeof *keys);
    if (!keys) {
        return false;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (s->keys[i]) {
            size_t j = u64set_slot(s->keys[i], cap);
            while (keys[j]) {
                j = (j + 1) & (cap - 1);
            }
            keys[j] = s->keys[i];
        }
    }
    util_free(s->keys);
    s->keys = keys;
    s->cap = cap;
    return true;
}

int u64set_add(u64set *s, uint64_t key) {
    if ((s->count + 1) * 2 > s->cap && !u64set_grow(s)) {
        return -1;
    }
    size_t j = u64set_slot(key, s->cap);
    while (s->keys[j]) {
        if (s->keys[j] == key) {
            return 0;
        }
        j = (j + 1) & (s->cap - 1);
    }
    s->keys[j] = key;
    s->count++;
    return 1;
}

bool u64set_has(const u64set *s, uint64_t key) {
    if (!s->cap) {
        return false;
    }
    size_t j = u64set_slot(key, s->cap);
    while (s->keys[j]) {
        if (s->keys[j] == key) {
            return true;
        }
        j = (j + 1) & (s->cap - 1);
    }
    return false;
}

size_t util_utf8_decode(const unsigned char *p, size_t n, uint32_t *cp_out) {
    if (n == 0) {
        return 0;
    }
    if (p[0] < 0x80) {
        if (cp_out) {
            *cp_out = p[0];
        }
        return 1;
    }
    size_t len;
    uint32_t cp, min;
    if ((p[0] & 0xE0) == 0xC0) {
        len = 2, cp = p[0] & 0x1Fu, min = 0x80;
    } else if ((p[0] & 0xF0) == 0xE0) {
        len = 3, cp = p[0] & 0x0Fu, min = 0x800;
    } else if ((p[0] & 0xF8) == 0xF0) {
        len = 4, cp = p[0] & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if (i >= n || (p[i] & 0xC0) != 0x80) {
            return 0; /* also stops at the NUL */
        }
        cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    if (cp_out) {
        *cp_out = cp;
    }
    return len;
}

size_t util_utf8_len(const unsigned char *p) {
    return util_utf8_decode(p, 4, NULL);
}

/* Characters that are printable but reorder the text around them or break
 * its lines: the bidi marks, embeddings, overrides and isolates (what
 * "Trojan source" uses), and the Unicode line and paragraph separators. */
static bool util_is_invisible_control(uint32_t cp) {
    return cp == 0x061C || cp == 0x200E || cp == 0x200F || (cp >= 0x2028 && cp <= 0x202E) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

/* The text for one code point: its UTF-8 bytes, or its escape. */
static size_t util_escape_form(uint32_t cp, unsigned flags, char out[UTIL_ESC_MAX + 1]) {
    static const char hex[] = "0123456789abcdef";
    if ((cp < 0x20 && !((flags & UTIL_ESC_KEEP_LINES) && (cp == '\n' || cp == '\t'))) ||
        (cp >= 0x7F && cp <= 0x9F) || (cp >= 0xDC80 && cp <= 0xDCFF)) {
        uint32_t byte = cp & 0xFF; /* U+DCxx stands for the byte xx */
        out[0] = '\\', out[1] = 'x', out[2] = hex[byte >> 4], out[3] = hex[byte & 15];
        return 4;
    }
    if ((flags & UTIL_ESC_REPR) && (cp == '\\' || cp == '\'')) {
        out[0] = '\\', out[1] = (char)cp;
        return 2;
    }
    if ((cp >= 0xD800 && cp <= 0xDFFF) || util_is_invisible_control(cp) || cp > 0x10FFFF) {
        size_t digits = cp > 0xFFFF ? 8 : 4;
        out[0] = '\\', out[1] = digits == 8 ? 'U' : 'u';
        for (size_t k = 0; k < digits; k++) {
            out[2 + k] = hex[(cp >> (4 * (digits - 1 - k))) & 15];
        }
        return 2 + digits;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

void util_escape_cp(sbuf *b, uint32_t cp, unsigned flags) {
    char form[UTIL_ESC_MAX + 1];
    sbuf_add(b, form, util_escape_form(cp, flags, form));
}

/* Where escaped text goes: a growable buffer, or a fixed one that takes
 * whole pieces until the next one does not fit. */
typedef struct util_esc_out {
    sbuf *b;
    char *dst;
    size_t cap, len;
    bool full;
} util_esc_out;

static void util_esc_put(util_esc_out *o, const char *piece, size_t n) {
    if (o->b) {
        sbuf_add(o->b, piece, n);
    } else if (o->len + n < o->cap) {
        memcpy(o->dst + o->len, piece, n);
        o->len += n;
    } else {
        o->full = true;
    }
}

static void util_escape_to(util_esc_out *o, const char *s, size_t n, unsigned flags) {
    const unsigned char *p = (const unsigned char *)s;
    char form[UTIL_ESC_MAX + 1];
    for (size_t i = 0; i < n && !o->full;) {
        /* Runs of plain printable ASCII go through in one piece. */
        size_t run = 0;
        while (i + run < n && p[i + run] >= 0x20 && p[i + run] < 0x7F &&
               !((flags & UTIL_ESC_REPR) && (p[i + run] == '\\' || p[i + run] == '\''))) {
            run++;
        }
        if (run) {
            if (o->b || o->len + run < o->cap) {
                util_esc_put(o, s + i, run);
                i += run;
                continue;
            }
            /* A fixed buffer takes what fits of the run. */
            util_esc_put(o, s + i, o->cap - 1 - o->len);
            o->full = true;
            break;
        }
        uint32_t cp;
        size_t len = util_utf8_decode(p + i, n - i, &cp);
        if (len == 0) {
            cp = 0xDC00 | p[i]; /* a byte that is not UTF-8: its \xNN */
            len = 1;
        }
        util_esc_put(o, form, util_escape_form(cp, flags, form));
        if (!o->full) {
            i += len;
        }
    }
}

void util_escape(sbuf *b, const char *s, size_t n, unsigned flags) {
    util_esc_out o = {.b = b};
    util_escape_to(&o, s, n, flags);
}

size_t util_escape_buf(char *dst, size_t cap, const char *s, size_t n, unsigned flags) {
    if (cap == 0) {
        return 0;
    }
    util_esc_out o = {.dst = dst, .cap = cap};
    util_escape_to(&o, s, n, flags);
    dst[o.len] = '\0';
    return o.len;
}

static bool util_is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

size_t util_escape_cut(const char *s, size_t len, size_t max) {
    if (len <= max) {
        return len;
    }
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
        n--; /* s[n] continues a sequence that starts before the cut */
    }
    /* An escape that starts in the last few bytes before the cut and would
     * end after it goes whole: "\x1" would read as another text. */
    for (size_t back = 1; back <= UTIL_ESC_MAX && back <= n; back++) {
        size_t j = n - back;
        if (s[j] != '\\') {
            continue;
        }
        size_t want = s[j + 1] == 'x' ? 4 : s[j + 1] == 'u' ? 6 : s[j + 1] == 'U' ? 10 : 2;
        bool hex = true;
        for (size_t k = j + 2; k < n && k < j + want; k++) {
            hex = hex && util_is_hex(s[k]);
        }
        if (hex && j + want > n) {
            n = j;
        }
        break;
    }
    return n;
}

void util_cycle_init(util_cycle *c, uint64_t start) {
    c->saved = start;
    c->power = 1;
    c->steps = 0;
}

bool util_cycle_step(util_cycle *c, uint64_t next) {
    if (next == c->saved) {
        return true;
    }
    if (++c->steps == c->power) {
        c->saved = next;
        c->power *= 2;
        c->steps = 0;
    }
    return false;
}

void u64map_init(u64map *m) {
    memset(m, 0, sizeof *m);
}

void u64map_free(u64map *m) {
    util_free(m->slots);
    u64map_init(m);
}

/* Rehashes into cap slots (a power of two, more than twice the count). */
static bool u64map_rehash(u64map *m, size_t cap) {
    uint64_t *slots = util_calloc(cap, 2 * sizeof *slots);
    if (!slots) {
        return false;
    }
    for (size_t i = 0; i < m->cap; i++) {
        uint64_t key = m->slots[2 * i];
        if (key) {
            size_t j = u64set_slot(key, cap);
            while (slots[2 * j]) {
                j = (j + 1) & (cap - 1);
            }
            slots[2 * j] = key;
            slots[2 * j + 1] = m->slots[2 * i + 1];
        }
    }
    util_free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return true;
}

static bool u64map_grow(u64map *m) {
    return u64map_rehash(m, m->cap ? m->cap * 2 : 64);
}

bool u64map_reserve(u64map *m, size_t n) {
    size_t cap = m->cap ? m->cap : 64;
    while (cap / 2 < n + 1) {
        if (cap > SIZE_MAX / 4) {
            return false;
        }
        cap *= 2;
    }
    return cap == m->cap || u64map_rehash(m, cap);
}

bool u64map_put(u64map *m, uint64_t key, uint64_t value) {
    if ((m->count + 1) * 2 > m->cap && !u64map_grow(m)) {
        return false;
    }
    size_t j = u64set_slot(key, m->cap);
    while (m->slots[2 * j] && m->slots[2 * j] != key) {
        j = (j + 1) & (m->cap - 1);
    }
    if (!m->slots[2 * j]) {
        m->slots[2 * j] = key;
        m->count++;
    }
    m->slots[2 * j + 1] = value;
    return true;
}

void u64map_prefetch(const u64map *m, uint64_t key) {
    if (m->cap) {
        __builtin_prefetch(&m->slots[2 * u64set_slot(key, m->cap)]);
    }
}

bool u64map_get(const u64map *m, uint64_t key, uint64_t *value) {
    if (!m->cap) {
        return false;
    }
    size_t j = u64set_slot(key, m->cap);
    while (m->slots[2 * j]) {
        if (m->slots[2 * j] == key) {
            *value = m->slots[2 * j + 1];
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}
