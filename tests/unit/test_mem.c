/* The memory layer over the synthetic image: page-cache reads across page
 * and region boundaries, partly unmapped reads, C strings that run into an
 * unmapped page, mapping lookup and read fault injection; the host backend
 * (a debugger's callbacks): its block cache and, in a core, its reads of
 * mapped files. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/mem/mem.h"
#include "unit.h"

/* A byte that differs between neighbouring addresses and between pages. */
static uint8_t pat(uint64_t a) {
    return (uint8_t)(a ^ (a >> 8) ^ (a >> 16) ^ 0x5a);
}

/* Adds [addr, addr + len) filled with pat(). */
static void add_pattern(mem *m, uint64_t addr, size_t len) {
    uint8_t *b = malloc(len);
    if (!CHECK(b != NULL)) {
        return;
    }
    for (size_t i = 0; i < len; i++) {
        b[i] = pat(addr + i);
    }
    CHECK_ERR(mem_image_add(m, addr, b, len), ERR_OK);
    free(b);
}

/* True when dst holds pat() for [addr, addr + len). */
static bool is_pattern(const uint8_t *dst, uint64_t addr, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (dst[i] != pat(addr + i)) {
            return false;
        }
    }
    return true;
}

TEST(mem_read_crosses_page_boundary_inside_one_region) {
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    add_pattern(m, 0x10000, 3 * MEM_PAGE_SIZE);
    uint8_t b[64];
    CHECK_ERR(mem_read(m, 0x10000 + MEM_PAGE_SIZE - 24, sizeof b, b), ERR_OK);
    CHECK(is_pattern(b, 0x10000 + MEM_PAGE_SIZE - 24, sizeof b));
    /* A read spanning all three pages, through the cache. */
    uint8_t big[2 * MEM_PAGE_SIZE + 100];
    CHECK_ERR(mem_read(m, 0x10000 + 500, sizeof big, big), ERR_OK);
    CHECK(is_pattern(big, 0x10000 + 500, sizeof big));
    mem_close(m);
}

TEST(mem_read_spans_adjacent_regions_within_and_across_pages) {
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    /* Two regions meeting mid-page; the second also crosses a page end. */
    add_pattern(m, 0x20000, 0x800);
    add_pattern(m, 0x20800, 0x1000);
    uint8_t b[64];
    CHECK_ERR(mem_read(m, 0x20800 - 32, sizeof b, b), ERR_OK);
    CHECK(is_pattern(b, 0x20800 - 32, sizeof b));
    CHECK_ERR(mem_read(m, 0x21000 - 32, sizeof b, b), ERR_OK);
    CHECK(is_pattern(b, 0x21000 - 32, sizeof b));
    uint8_t all[0x1800];
    CHECK_ERR(mem_read(m, 0x20000, sizeof all, all), ERR_OK);
    CHECK(is_pattern(all, 0x20000, sizeof all));
    mem_close(m);
}

TEST(mem_read_partly_unmapped_fails_with_err_read) {
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    add_pattern(m, 0x30000, MEM_PAGE_SIZE);
    add_pattern(m, 0x40000 + 100, 200); /* part of a page */
    uint8_t b[32];
    CHECK_ERR(mem_read(m, 0x30000 + MEM_PAGE_SIZE - 16, sizeof b, b), ERR_READ);
    CHECK_ERR(mem_read(m, 0x30000 - 16, sizeof b, b), ERR_READ);
    CHECK_ERR(mem_read(m, 0x40000 + 100 + 200 - 16, sizeof b, b), ERR_READ);
    CHECK_ERR(mem_read(m, 0x40000 + 90, sizeof b, b), ERR_READ);
    /* The readable parts still read, exactly, though their page is partial. */
    CHECK_ERR(mem_read(m, 0x40000 + 100, sizeof b, b), ERR_OK);
    CHECK(is_pattern(b, 0x40000 + 100, sizeof b));
    CHECK_ERR(mem_read(m, 0x40000 + 300 - sizeof b, sizeof b, b), ERR_OK);
    CHECK(is_pattern(b, 0x40000 + 300 - sizeof b, sizeof b));
    mem_close(m);
}

TEST(mem_read_rejects_wrapping_and_oversized_ranges) {
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    add_pattern(m, 0x50000, MEM_PAGE_SIZE);
    uint8_t b[16];
    CHECK_ERR(mem_read(m, UINT64_MAX - 4, sizeof b, b), ERR_READ);
    CHECK_ERR(mem_read(m, 0x50000, (size_t)MEM_READ_MAX + 1, b), ERR_READ);
    CHECK_ERR(mem_read(m, 0xdead0000, 0, b), ERR_OK); /* nothing to read */
    mem_close(m);
}

TEST(mem_cache_hit_costs_no_backend_read_and_collisions_keep_pages_apart) {
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    /* Two pages that fall in the same cache set. */
    uint64_t a = 0x100000, b = a + (uint64_t)MEM_CACHE_PAGES * MEM_PAGE_SIZE;
    add_pattern(m, a, MEM_PAGE_SIZE);
    add_pattern(m, b, MEM_PAGE_SIZE);
    uint64_t va, vb;
    CHECK_ERR(mem_read_u64(m, a + 8, &va), ERR_OK);
    uint64_t misses = m->misses;
    CHECK_ERR(mem_read_u64(m, a + 16, &va), ERR_OK);
    CHECK_EQ(m->misses, misses);
    for (int i = 0; i < 3; i++) {
        CHECK_ERR(mem_read(m, b + 40, sizeof vb, &vb), ERR_OK);
        CHECK(is_pattern((const uint8_t *)&vb, b + 40, sizeof vb));
        CHECK_ERR(mem_read(m, a + 40, sizeof va, &va), ERR_OK);
        CHECK(is_pattern((const uint8_t *)&va, a + 40, sizeof va));
    }
    CHECK(va != vb);
    mem_close(m);
}

TEST(mem_cache_keeps_a_set_of_aliasing_pages_and_drops_the_least_recent) {
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    /* MEM_CACHE_WAYS + 1 pages that all fall in one cache set. */
    uint64_t stride = (uint64_t)(MEM_CACHE_PAGES / MEM_CACHE_WAYS) * MEM_PAGE_SIZE;
    uint64_t base = 0x1000000, v;
    for (unsigned i = 0; i <= MEM_CACHE_WAYS; i++) {
        add_pattern(m, base + i * stride, MEM_PAGE_SIZE);
    }
    for (unsigned i = 0; i < MEM_CACHE_WAYS; i++) {
        CHECK_ERR(mem_read_u64(m, base + i * stride, &v), ERR_OK);
    }
    /* All of them stay: a direct-mapped cache kept only the last. */
    uint64_t misses = m->misses;
    for (unsigned i = 0; i < MEM_CACHE_WAYS; i++) {
        CHECK_ERR(mem_read_u64(m, base + i * stride + 8, &v), ERR_OK);
        CHECK(is_pattern((const uint8_t *)&v, base + i * stride + 8, sizeof v));
    }
    CHECK_EQ(m->misses, misses);
    /* Page 0 used again, then one page more: page 1, now the least recently
     * used, is the one replaced. */
    CHECK_ERR(mem_read_u64(m, base, &v), ERR_OK);
    CHECK_ERR(mem_read_u64(m, base + MEM_CACHE_WAYS * stride, &v), ERR_OK);
    CHECK_EQ(m->misses, misses + 1);
    CHECK_ERR(mem_read_u64(m, base + 16, &v), ERR_OK);
    CHECK_EQ(m->misses, misses + 1);
    CHECK_ERR(mem_read_u64(m, base + stride + 16, &v), ERR_OK);
    CHECK(is_pattern((const uint8_t *)&v, base + stride + 16, sizeof v));
    CHECK_EQ(m->misses, misses + 2);
    mem_close(m);
}

TEST(mem_read_cstr_stops_at_an_unmapped_page_but_not_before_it) {
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    uint8_t page[MEM_PAGE_SIZE];
    memset(page, 'x', sizeof page);
    memcpy(page + MEM_PAGE_SIZE - 8, "abcdefgh", 8); /* no NUL before the page end */
    memcpy(page + 100, "end\0", 4);
    memcpy(page + MEM_PAGE_SIZE - 24, "tail\0", 5);
    CHECK_ERR(mem_image_add(m, 0x60000, page, sizeof page), ERR_OK);
    memset(page, 'y', sizeof page);
    memcpy(page + MEM_PAGE_SIZE - 6, "hello", 6); /* the NUL is the page's last byte */
    CHECK_ERR(mem_image_add(m, 0x70000, page, sizeof page), ERR_OK);
    char s[64];
    memset(s, '?', sizeof s);
    CHECK_ERR(mem_read_cstr(m, 0x60000 + MEM_PAGE_SIZE - 8, s, sizeof s), ERR_READ);
    CHECK_STR(s, "abcdefgh");
    CHECK_ERR(mem_read_cstr(m, 0x60000 + MEM_PAGE_SIZE - 24, s, sizeof s), ERR_OK);
    CHECK_STR(s, "tail");
    CHECK_ERR(mem_read_cstr(m, 0x60000 + 97, s, 4), ERR_OK); /* "xxxend" cut to 3 */
    CHECK_STR(s, "xxx");
    CHECK_ERR(mem_read_cstr(m, 0x60000 + 97, s, sizeof s), ERR_OK);
    CHECK_STR(s, "xxxend");
    CHECK_ERR(mem_read_cstr(m, 0x70000 + MEM_PAGE_SIZE - 6, s, sizeof s), ERR_OK);
    CHECK_STR(s, "hello");
    /* Three mapped bytes mid-page and cap 4: the fourth byte is never read. */
    CHECK_ERR(mem_image_add(m, 0x80000 + 100, "abc", 3), ERR_OK);
    CHECK_ERR(mem_read_cstr(m, 0x80000 + 100, s, 4), ERR_OK);
    CHECK_STR(s, "abc");
    mem_close(m);
}

static const mem_ops *spy_inner;
static uint64_t spy_calls;

static err_t spy_read(mem *m, uint64_t addr, size_t len, void *dst) {
    spy_calls++;
    return spy_inner->read(m, addr, len, dst);
}

TEST(mem_fail_countdown_fails_exactly_the_nth_backend_read) {
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    static mem_ops spy_ops;
    spy_ops = *m->ops;
    spy_ops.read = spy_read;
    spy_inner = m->ops;
    m->ops = &spy_ops;
    spy_calls = 0;
    /* Reads of more than four pages bypass the cache: one backend read each. */
    size_t len = 5 * MEM_PAGE_SIZE;
    add_pattern(m, 0x200000, len);
    uint8_t *b = malloc(len);
    if (!CHECK(b != NULL)) {
        mem_close(m);
        return;
    }
    m->fail_countdown = 3;
    err_t got[5];
    for (int i = 0; i < 5; i++) {
        memset(b, 0, len);
        got[i] = mem_read(m, 0x200000, len, b);
    }
    CHECK_ERR(got[0], ERR_OK);
    CHECK_ERR(got[1], ERR_OK);
    CHECK_ERR(got[2], ERR_READ);
    CHECK_ERR(got[3], ERR_OK);
    CHECK_ERR(got[4], ERR_OK);
    CHECK(is_pattern(b, 0x200000, len));
    CHECK_EQ(spy_calls, 4); /* the failed one never reached the backend */
    CHECK_EQ(m->fail_countdown, 0);
    free(b);
    mem_close(m);
}

TEST(mem_find_map_finds_the_containing_mapping_after_sorting) {
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    CHECK_ERR(mem_add_map(m, 0x5000, 0x6000, 0, "/c"), ERR_OK);
    CHECK_ERR(mem_add_map(m, 0x1000, 0x2000, 0, "/a"), ERR_OK);
    CHECK_ERR(mem_add_map(m, 0x2000, 0x4000, 0x1000, "/b"), ERR_OK);
    mem_sort_maps(m);
    const mem_map *mp = mem_find_map(m, 0x2000);
    CHECK(mp && strcmp(mp->path, "/b") == 0);
    mp = mem_find_map(m, 0x1fff);
    CHECK(mp && strcmp(mp->path, "/a") == 0);
    mp = mem_find_map(m, 0x5fff);
    CHECK(mp && strcmp(mp->path, "/c") == 0);
    CHECK(mem_find_map(m, 0x4000) == NULL);
    CHECK(mem_find_map(m, 0x6000) == NULL);
    CHECK(mem_find_map(m, 0) == NULL);
    mem_close(m);
}

TEST(mem_read_cstr_finds_a_nul_in_a_partly_mapped_page) {
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    /* Only four bytes of the page exist (a cut core, a debugger's partial
     * page): the string is complete, so it must be read. */
    CHECK_ERR(mem_image_add(m, 0x20064, "abc", 4), ERR_OK);
    char s[64];
    CHECK_ERR(mem_read_cstr(m, 0x20064, s, sizeof s), ERR_OK);
    CHECK_STR(s, "abc");
    /* Without the NUL it ends at the hole, as an error. */
    CHECK_ERR(mem_image_add(m, 0x30064, "abc", 3), ERR_OK);
    CHECK_ERR(mem_read_cstr(m, 0x30064, s, sizeof s), ERR_READ);
    mem_close(m);
}

TEST(mem_injected_failure_on_a_cold_page_reaches_the_caller) {
    err_record err = {0};
    mem *m = mem_image_open(&err);
    if (!CHECK(m != NULL)) {
        return;
    }
    uint8_t page[MEM_PAGE_SIZE] = {1};
    CHECK_ERR(mem_image_add(m, 0x50000, page, sizeof page), ERR_OK);
    uint64_t v;
    m->fail_countdown = 1;
    CHECK_ERR(mem_read_u64(m, 0x50000, &v), ERR_READ);
    /* Only that one read fails: the next one fills the cache. */
    CHECK_ERR(mem_read_u64(m, 0x50000, &v), ERR_OK);
    CHECK_EQ(v, 1);
    mem_close(m);
}

/* A debugger stand-in: one 8 KiB buffer at HOST_BASE, one mapping, two
 * threads, and a count of reads to see the page cache at work. */
#define HOST_BASE 0x7f0000000000ull
typedef struct host_fake {
    uint8_t mem[2 * MEM_PAGE_SIZE];
    int reads;
} host_fake;

static int host_fake_read(void *ctx, uint64_t addr, size_t len, void *dst) {
    host_fake *h = ctx;
    h->reads++;
    if (addr < HOST_BASE || addr - HOST_BASE > sizeof h->mem ||
        len > sizeof h->mem - (addr - HOST_BASE)) {
        return -1;
    }
    memcpy(dst, h->mem + (addr - HOST_BASE), len);
    return 0;
}

static int host_fake_mappings(void *ctx, snarl_mapping_cb cb, void *cb_ctx) {
    (void)ctx;
    snarl_mapping m = {HOST_BASE, HOST_BASE + 2 * MEM_PAGE_SIZE, 0, "/nonexistent/libpython.so"};
    snarl_mapping anon = {0x1000, 0x2000, 0, "[heap]"};
    return cb(cb_ctx, &anon) || cb(cb_ctx, &m);
}

static int host_fake_threads(void *ctx, int (*cb)(void *, int64_t), void *cb_ctx) {
    (void)ctx;
    return cb(cb_ctx, 101) || cb(cb_ctx, 102);
}

TEST(host_backend_reads_through_callbacks_and_the_page_cache) {
    host_fake h = {.reads = 0};
    for (size_t i = 0; i < sizeof h.mem; i++) {
        h.mem[i] = (uint8_t)i;
    }
    snarl_host host = {.ctx = &h,
                       .read = host_fake_read,
                       .mappings = host_fake_mappings,
                       .threads = host_fake_threads,
                       .pid = 77,
                       .is_core = 1};
    err_record err = {0};
    mem *m = mem_host_open(&err, &host, NULL);
    if (!CHECK(m != NULL)) {
        return;
    }
    CHECK_EQ(m->pid, 77);
    CHECK_EQ(m->maps.len, 1); /* only file mappings are kept */
    CHECK_EQ(VEC_AT(&m->maps, mem_map, 0)->status, MEM_FILE_MISSING);
    CHECK_EQ(m->tids.len, 2);
    mem_cache_flush(m); /* opening read the ELF header page for a build-id */
    int before = h.reads;
    uint8_t b[16];
    CHECK_ERR(mem_read(m, HOST_BASE + 0xff8, 16, b), ERR_OK); /* two pages */
    CHECK_EQ(b[0], (uint8_t)0xf8);
    CHECK_EQ(b[8], 0x00);
    CHECK_ERR(mem_read(m, HOST_BASE + 0x10, 8, b), ERR_OK); /* cached */
    CHECK_EQ(h.reads - before, 2);
    CHECK_ERR(mem_read(m, HOST_BASE + 2 * MEM_PAGE_SIZE, 8, b), ERR_READ);
    mem_close(m);
}

TEST(host_backend_without_required_callbacks_is_a_usage_error) {
    snarl_host host = {.read = host_fake_read};
    err_record err = {0};
    CHECK(mem_host_open(&err, &host, NULL) == NULL);
    CHECK_EQ(err.code, ERR_USAGE);
}

TEST(host_backend_reads_blocks_and_marks_the_pages_of_a_hole) {
    host_fake h = {.reads = 0};
    for (size_t i = 0; i < sizeof h.mem; i++) {
        h.mem[i] = (uint8_t)i;
    }
    /* 64 KiB blocks: the first block holds the 8 KiB the fake has and 56 KiB
     * of hole, so it is read whole once, fails, and is read page by page. */
    snarl_host host = {.ctx = &h,
                       .read = host_fake_read,
                       .mappings = host_fake_mappings,
                       .block_size = 16 * MEM_PAGE_SIZE};
    err_record err = {0};
    mem *m = mem_host_open(&err, &host, NULL);
    if (!CHECK(m != NULL)) {
        return;
    }
    CHECK_EQ(m->line_size, 16 * MEM_PAGE_SIZE);
    mem_cache_flush(m);
    int before = h.reads;
    uint8_t b[16];
    CHECK_ERR(mem_read(m, HOST_BASE + 0xff8, 16, b), ERR_OK);
    CHECK_EQ(b[0], (uint8_t)0xf8);
    CHECK_EQ(h.reads - before, 1 + 16);
    CHECK_ERR(mem_read(m, HOST_BASE + MEM_PAGE_SIZE + 0x40, 8, b), ERR_OK); /* cached */
    CHECK_EQ(b[0], 0x40);
    CHECK_EQ(h.reads - before, 1 + 16);
    /* A page of the hole: one exact read, which fails. */
    CHECK_ERR(mem_read(m, HOST_BASE + 2 * MEM_PAGE_SIZE, 8, b), ERR_READ);
    CHECK_EQ(h.reads - before, 1 + 16 + 1);
    /* Across the edge of the hole: fails, the readable part is no excuse. */
    CHECK_ERR(mem_read(m, HOST_BASE + 2 * MEM_PAGE_SIZE - 4, 8, b), ERR_READ);
    mem_close(m);
}

/* A core whose file mapping's pages the debugger cannot supply: the file on
 * this machine can. */
static const char *host_file_path;

static int host_file_mappings(void *ctx, snarl_mapping_cb cb, void *cb_ctx) {
    (void)ctx;
    snarl_mapping m = {HOST_BASE, HOST_BASE + 2 * MEM_PAGE_SIZE, MEM_PAGE_SIZE, host_file_path};
    return cb(cb_ctx, &m);
}

static int host_fail_read(void *ctx, uint64_t addr, size_t len, void *dst) {
    (void)ctx, (void)addr, (void)len, (void)dst;
    return -1;
}

TEST(host_backend_reads_a_core_file_mapping_from_the_file) {
    char path[] = "/tmp/snarl-unit-XXXXXX";
    int fd = mkstemp(path);
    if (!CHECK(fd >= 0)) {
        return;
    }
    uint8_t data[3 * MEM_PAGE_SIZE];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(i / MEM_PAGE_SIZE + 1);
    }
    CHECK_EQ(write(fd, data, sizeof data), (ssize_t)sizeof data);
    close(fd);
    host_file_path = path;
    for (int is_core = 0; is_core <= 1; is_core++) {
        snarl_host host = {
            .read = host_fail_read, .mappings = host_file_mappings, .is_core = is_core};
        err_record err = {0};
        mem *m = mem_host_open(&err, &host, NULL);
        if (!CHECK(m != NULL)) {
            break;
        }
        CHECK_EQ(VEC_AT(&m->maps, mem_map, 0)->status, MEM_FILE_UNVERIFIED);
        uint8_t b[4] = {0};
        /* The mapping starts at file offset one page: the file's second page. */
        CHECK_ERR(mem_read(m, HOST_BASE + 8, sizeof b, b), is_core ? ERR_OK : ERR_READ);
        CHECK_EQ(b[0], is_core ? 2 : 0);
        /* A live process gave what it has: no second guess from files. */
        CHECK_ERR(mem_read(m, HOST_BASE + 2 * MEM_PAGE_SIZE, sizeof b, b), ERR_READ);
        mem_close(m);
    }
    unlink(path);
}
