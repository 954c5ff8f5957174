/* The hooks that record and replay analyses (tests/fuzz/): the memory
 * layer's observer sees exactly the bytes of successful reads; symbol
 * presets answer lookups in place of ELF files, per file and kind; the
 * allocator counts the allocations a fault test can fail. */
#include <string.h>

#include "../../src/mem/mem.h"
#include "../../src/sym/sym.h"
#include "unit.h"

typedef struct seen {
    uint64_t addr;
    size_t len, calls;
    uint8_t first;
} seen;

static void observe(void *ctx, uint64_t addr, size_t len, const void *data) {
    seen *s = ctx;
    s->addr = addr;
    s->len = len;
    s->first = ((const uint8_t *)data)[0];
    s->calls++;
}

TEST(mem_observer_sees_successful_reads_with_their_bytes_and_nothing_else) {
    err_record err;
    err_clear(&err);
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    uint8_t data[64];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(i + 1);
    }
    CHECK_ERR(mem_image_add(m, 0x10000, data, sizeof data), ERR_OK);
    seen s = {0};
    m->observe = observe;
    m->observe_ctx = &s;
    uint8_t out[16];
    CHECK_ERR(mem_read(m, 0x10008, 16, out), ERR_OK);
    CHECK_EQ(s.calls, 1);
    CHECK_EQ(s.addr, 0x10008);
    CHECK_EQ(s.len, 16);
    CHECK_EQ(s.first, 9);
    /* Runs past the region: fails, and is not seen. */
    CHECK_ERR(mem_read(m, 0x10038, 16, out), ERR_READ);
    CHECK_EQ(s.calls, 1);
    mem_close(m);
}

TEST(sym_presets_answer_lookups_per_file_and_kind_without_files) {
    err_record err;
    err_clear(&err);
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    CHECK_ERR(mem_add_map(m, 0x400000, 0x401000, 0, "/usr/bin/python3.99"), ERR_OK);
    CHECK_ERR(mem_add_map(m, 0x7f0000000000, 0x7f0000001000, 0, "/lib/_asyncio.so"), ERR_OK);
    sym_table t;
    CHECK_ERR(sym_open(&t, m), ERR_OK);
    const sym_preset p[] = {
        {"/usr/bin/python3.99", "_PyRuntime", false, 0x500000, 0x1000},
        {"/lib/_asyncio.so", ".AsyncioDebug", true, 0x7f0000000800, 96},
        {"/not/mapped", "Py_Version", false, 0x1, 4},
    };
    t.presets = p;
    t.npresets = ARRAY_LEN(p);
    const sym_file *py = VEC_AT(&t.files, sym_file, 0);
    const sym_file *aio = VEC_AT(&t.files, sym_file, 1);
    sym_hit h = {0};
    CHECK(sym_lookup(&t, NULL, "_PyRuntime", &h));
    CHECK_EQ(h.addr, 0x500000);
    CHECK_EQ(h.size, 0x1000);
    CHECK(h.file == py);
    CHECK(!sym_lookup(&t, aio, "_PyRuntime", &h));
    CHECK(!sym_section(&t, NULL, "_PyRuntime", &h));
    CHECK(sym_section(&t, aio, ".AsyncioDebug", &h));
    CHECK_EQ(h.addr, 0x7f0000000800);
    /* A fact about a file the target does not map is no answer. */
    CHECK(!sym_lookup(&t, NULL, "Py_Version", &h));
    /* Presets stand for the files: none is read. */
    uint8_t b[4];
    CHECK_ERR(sym_read_file(&t, py, 0x500000, b, sizeof b), ERR_READ);
    sym_close(&t);
    mem_close(m);
}

TEST(util_alloc_calls_counts_every_allocation_including_failed_ones) {
    uint64_t before = util_alloc_calls();
    void *a = util_alloc(8);
    util_fail_alloc_at(1);
    void *b = util_calloc(2, 8);
    util_fail_alloc_at(0);
    char *c = util_strdup("x");
    CHECK(a != NULL);
    CHECK(b == NULL);
    CHECK(c != NULL);
    CHECK_EQ(util_alloc_calls() - before, 3);
    util_free(a);
    util_free(c);
}
