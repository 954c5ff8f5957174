/* Small containers shared by every layer: a growable byte buffer, a growable
 * array and a set of 64-bit addresses. Allocation failures are reported to
 * the caller (the engine never aborts); the allocator can be made to fail on
 * the Nth call for fault-injection tests. */
#ifndef SNARL_BASE_UTIL_H
#define SNARL_BASE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *util_alloc(size_t n);
void *util_calloc(size_t n, size_t size);
void *util_realloc(void *p, size_t n);
/* util_alloc for a large block touched at random places (a page cache):
 * backed by huge pages where the kernel allows, so that filling it costs a
 * page fault per 2 MiB instead of per 4 KiB (and its resident size is then
 * about the whole block). */
void *util_alloc_huge(size_t n);
char *util_strdup(const char *s);
void util_free(void *p);
/* Fault injection: make the nth allocation from now on fail (0 disables). */
void util_fail_alloc_at(uint64_t nth);
/* Allocations attempted so far (util_alloc, util_calloc, util_realloc), so a
 * fault test knows how many there are to fail. */
uint64_t util_alloc_calls(void);

/* Growable text buffer; once an allocation fails it stays failed and further
 * appends are ignored, so callers check `oom` once at the end. */
typedef struct sbuf {
    char *data;
    size_t len;
    size_t cap;
    bool oom;
} sbuf;

void sbuf_init(sbuf *b);
void sbuf_free(sbuf *b);
void sbuf_reset(sbuf *b);
void sbuf_add(sbuf *b, const char *s, size_t n);
void sbuf_adds(sbuf *b, const char *s);
void sbuf_addc(sbuf *b, char c);
void sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* NUL-terminated view of the buffer (empty string when nothing was added). */
const char *sbuf_str(sbuf *b);

/* Growable array of fixed-size elements. Counts are 32 bits: a million
 * tasks hold five vectors each, and every word of a vector is 40 MB there;
 * no vector of the engine nears 2^32 elements (its limits, AIO_TASKS_MAX,
 * AIO_REACH_EDGES_MAX, MEM_READ_MAX, are far below), and one that would is
 * refused as out of memory. */
#define VEC_LEN_MAX UINT32_MAX
typedef struct vec {
    void *data;
    uint32_t len;
    uint32_t cap;
    uint32_t elem;
    /* The data lives in a util_arena (vec_settle): not freed with the
     * vector, copied out if it grows. In the struct's padding: free. */
    bool in_arena;
} vec;

void vec_init(vec *v, size_t elem);
void vec_free(vec *v);
/* vec_push's slow path: room for one more element; false when out of
 * memory or at VEC_LEN_MAX. */
bool vec_grow(vec *v);
/* Appends one zeroed element and returns it, or NULL when out of memory.
 * Inline: the walk pushes five words per object of the target's heap, and
 * a call each was a twentieth of `check`. */
static inline void *vec_push(vec *v) {
    if (v->len == v->cap && !vec_grow(v)) {
        return NULL;
    }
    void *e = (char *)v->data + (size_t)v->len * v->elem;
    /* The common sizes with a constant length, which the compiler turns
     * into one store: a call to memset per word was a tenth of `check` on
     * a large heap. */
    switch (v->elem) {
    case 8:
        memset(e, 0, 8);
        break;
    case 4:
        memset(e, 0, 4);
        break;
    case 1:
        memset(e, 0, 1);
        break;
    default:
        memset(e, 0, v->elem);
    }
    v->len++;
    return e;
}
#define VEC_AT(v, type, i) (&((type *)(v)->data)[i])
/* Room for n elements in all, so that pushes up to n do not grow it (one
 * copy where doubling makes a dozen); false on allocation failure. */
bool vec_reserve(vec *v, size_t n);
/* Gives back the room beyond its length (a hint: kept as is when the
 * allocator cannot). */
void vec_shrink(vec *v);

/* Bump allocation in blocks, all given back at once: what a model keeps
 * until it is freed, a million small pieces (task names, each task's few
 * frames and ids), without an allocation's header and rounding each. A
 * zeroed arena is an empty one. */
typedef struct util_arena {
    vec blocks; /* char * */
    char *next;
    size_t left;
} util_arena;

/* n bytes aligned to 8, or NULL when out of memory. */
void *util_arena_alloc(util_arena *a, size_t n);
void util_arena_free(util_arena *a);

/* Moves v's elements into the arena, exactly as many as it holds, and gives
 * back its own allocation: for a vector that is done growing. False when
 * out of memory, v then unchanged (and still valid). */
bool vec_settle(vec *v, util_arena *a);

/* Sorts keys ascending, and with them extra (one byte per key, NULL for
 * none): least significant digit first, over the bits in which the keys
 * differ only. Linear, and stable; false when out of memory (the keys are
 * then unchanged). */
bool util_sort_u64(uint64_t *keys, uint8_t *extra, size_t n);

/* Vectors of uint64_t ids (tasks, resources); false on allocation failure. */
bool u64vec_push(vec *v, uint64_t x);
bool u64vec_has(const vec *v, uint64_t x);
/* Appends x unless present: a linear search, for short lists. */
bool u64vec_add_unique(vec *v, uint64_t x);

/* Open-addressing set of non-zero 64-bit keys (addresses). */
typedef struct u64set {
    uint64_t *keys;
    size_t count;
    size_t cap;
} u64set;

void u64set_init(u64set *s);
void u64set_free(u64set *s);
/* Returns 1 if added, 0 if it was already present, -1 on allocation failure. */
int u64set_add(u64set *s, uint64_t key);
bool u64set_has(const u64set *s, uint64_t key);

/* Open-addressing map from non-zero 64-bit keys to 64-bit values. A key
 * and its value sit side by side, so a probe touches one cache line, not
 * two: the reachability pass looks up every object of the heap. */
typedef struct u64map {
    uint64_t *slots; /* cap pairs: key (0 = empty), value */
    size_t count;
    size_t cap;
} u64map;

void u64map_init(u64map *m);
void u64map_free(u64map *m);
/* Sets key to value; false on allocation failure. */
bool u64map_put(u64map *m, uint64_t key, uint64_t value);
/* Room for n keys in all without growing: a table sized once when the
 * count is known (the task index) is filled without a rehash; false on
 * allocation failure. */
bool u64map_reserve(u64map *m, size_t n);
/* Starts loading the slot of key into the cache: a batch of lookups into
 * a table larger than the cache waits for its misses
 * together instead of one after the other. */
void u64map_prefetch(const u64map *m, uint64_t key);
/* The value of key, or false when absent. */
bool u64map_get(const u64map *m, uint64_t key, uint64_t *value);

/* Length (1-4) of the valid UTF-8 sequence at p, or 0 if the bytes there
 * are not one (stray continuation, overlong form, surrogate, past U+10FFFF,
 * or cut by the terminating NUL). Text from a target is untrusted bytes. */
size_t util_utf8_len(const unsigned char *p);
/* The same over at most n bytes (a NUL ends the sequence too); the code
 * point goes to *cp when valid. */
size_t util_utf8_decode(const unsigned char *p, size_t n, uint32_t *cp);

/* Escaping of text that came from a target (names, paths, strings read out
 * of its memory or a core's notes) so that it can never reach a terminal
 * raw: the result is valid UTF-8 with no control characters. The form is
 * Python's backslashreplace: each byte that is not UTF-8, each C0 or C1
 * control character and DEL is \xNN; a lone surrogate that stands for a
 * byte (U+DC80-U+DCFF, os.fsdecode's surrogateescape) is that byte's \xNN,
 * another one \uXXXX; the invisible characters that reorder or break lines
 * (bidi overrides and marks, U+2028, U+2029) are \uXXXX, so that a name
 * cannot disguise the text around it. A backslash is kept as it is (the
 * escape is for safety, not to be reversed), which makes escaping
 * idempotent: escaped text escapes to itself, so a second pass at another
 * layer costs nothing and changes nothing. docs/design.md §3 says where it
 * is applied. */
enum {
    /* Keep \n and \t: for snarl's own output, whose lines and columns they
     * are; text from a target never keeps them. */
    UTIL_ESC_KEEP_LINES = 1u << 0,
    /* Also write '\' as \\ and '\'' as \': the body of a Python repr. */
    UTIL_ESC_REPR = 1u << 1,
};
/* Longest escape of one code point: \UXXXXXXXX. */
#define UTIL_ESC_MAX 10
/* Appends code point cp (e.g. from a str object) as text or its escape. */
void util_escape_cp(sbuf *b, uint32_t cp, unsigned flags);
/* Appends n bytes of s, escaped. */
void util_escape(sbuf *b, const char *s, size_t n, unsigned flags);
/* Writes n bytes of s escaped into dst (cap bytes, NUL-terminated), without
 * allocating: whole characters and whole escapes only, as many as fit.
 * Returns the length written; dst may not overlap s. */
size_t util_escape_buf(char *dst, size_t cap, const char *s, size_t n, unsigned flags);
/* Where to cut escaped text of len bytes so that it fits in max bytes
 * without splitting a UTF-8 sequence or one of the escapes above. */
size_t util_escape_cut(const char *s, size_t len, size_t max);

/* Brent's cycle detection for a walk over target links (GC lists, task
 * lists): constant memory, and a list that loops back into itself (a
 * damaged core, a torn live read) is caught within about twice the loop's
 * length instead of after the walk's whole budget. */
typedef struct util_cycle {
    uint64_t saved; /* the node a later step is compared with */
    uint64_t power; /* steps until saved moves on (doubles each time) */
    uint64_t steps;
} util_cycle;

void util_cycle_init(util_cycle *c, uint64_t start);
/* Feeds the walk's next node; true when it was seen before (a loop). */
bool util_cycle_step(util_cycle *c, uint64_t next);

/* Reads little-endian integers out of a local copy of target memory; every
 * field access goes through these, never through a cast of the buffer. */
static inline uint64_t rd_u64(const void *buf, size_t off) {
    uint64_t v;
    memcpy(&v, (const char *)buf + off, sizeof v);
    return v;
}
static inline uint32_t rd_u32(const void *buf, size_t off) {
    uint32_t v;
    memcpy(&v, (const char *)buf + off, sizeof v);
    return v;
}
static inline uint16_t rd_u16(const void *buf, size_t off) {
    uint16_t v;
    memcpy(&v, (const char *)buf + off, sizeof v);
    return v;
}
static inline uint8_t rd_u8(const void *buf, size_t off) {
    return ((const uint8_t *)buf)[off];
}

#endif
