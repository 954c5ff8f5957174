/* Hand-built CPython targets for the unit tests: a synthetic memory image, a
 * py_target with one minor version's built-in layout, fake type objects, and
 * builders laying out str, int, bytes and dict objects as that version does. */
#ifndef SNARL_UNIT_FIXTURE_H
#define SNARL_UNIT_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../src/py/py.h"

/* The minor versions most tests run over: the three object layouts that
 * differ most (3.11 headers, 3.12 lv_tag and tagged values, 3.14 stackrefs
 * and inline values). */
extern const int fx_minors[3];

/* Type flags as CPython defines them (Include/object.h). */
#define FX_TPFLAGS_INLINE_VALUES (1ull << 2)
#define FX_TPFLAGS_MANAGED_DICT (1ull << 4)
#define FX_TPFLAGS_HEAPTYPE (1ull << 9)
#define FX_TPFLAGS_UNICODE_SUBCLASS (1ull << 28)

/* A fake type object is this large: enough for every field a reader uses
 * (ht_cached_keys is the furthest, at 888 in 3.15). */
#define FX_TYPE_SIZE 1024

typedef struct fx {
    err_record err;
    py_target t;
    uint64_t next; /* where fx_put places the next object */
} fx;

/* Opens an image and fills the target for minor; false on failure. Labels
 * the test's failure lines with the version. */
bool fx_open(fx *f, int minor);
void fx_close(fx *f);

/* Copies len bytes into the image at addr. */
void fx_put_at(fx *f, uint64_t addr, const void *data, size_t len);
/* Copies len bytes to a fresh 16-aligned address, with unmapped bytes
 * after it so a reader that runs past an object fails. */
uint64_t fx_put(fx *f, const void *data, size_t len);
/* A zeroed type object with the given tp_flags and tp_basicsize. */
uint64_t fx_type(fx *f, uint64_t flags, uint64_t basicsize);

/* Little-endian stores into a local object buffer. */
void fx_w64(uint8_t *buf, size_t off, uint64_t v);
void fx_w32(uint8_t *buf, size_t off, uint32_t v);
void fx_w16(uint8_t *buf, size_t off, uint16_t v);

/* A compact str of n code points of the given kind (1, 2 or 4); ascii
 * selects the compact-ASCII header. */
uint64_t fx_str_cp(fx *f, unsigned kind, bool ascii, const uint32_t *cps, size_t n);
/* A compact ASCII str. */
uint64_t fx_str(fx *f, const char *s);
/* An int of the given sign and 30-bit digits, least significant first. */
uint64_t fx_long_digits(fx *f, int sign, const uint32_t *digits, size_t n);
/* An int small enough for two digits. */
uint64_t fx_long(fx *f, int64_t v);
uint64_t fx_bytes(fx *f, const uint8_t *data, size_t n);

/* A dict keys object with 8 slots and one-byte indices. kind 0 entries are
 * {hash, key, value}; kinds 1 and 2 {key, value}. keys[i] == 0 makes a
 * deleted entry. */
uint64_t fx_keys(fx *f, unsigned kind, const uint64_t *keys, const uint64_t *values, size_t n);
uint64_t fx_dict(fx *f, uint64_t keys, uint64_t values);
/* A split-dict values array as the layout wants it (3.13+: 8-byte header). */
uint64_t fx_values(fx *f, const uint64_t *values, size_t n);

#endif
