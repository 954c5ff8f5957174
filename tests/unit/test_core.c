/* The ELF core backend on small cores written by hand: reads within and
 * across segments, truncated files, damaged or missing NT_FILE notes, pages
 * read from the mapped file, thread ids, and files that are not cores. */
#include <elf.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/mem/mem.h"
#include "unit.h"

/* Alignment of segment data in the file, as the kernel writes it. */
#define CORE_ALIGN 0x1000u
/* Size of NT_PRSTATUS on x86-64; the thread id is at 32. */
#define PRSTATUS_SIZE 336
#define PRSTATUS_PID 32
/* Size of NT_PRPSINFO on x86-64; the process id is at 24. */
#define PRPSINFO_SIZE 136
#define PRPSINFO_PID 24
/* Longest path the tests build under the scratch directory. */
#define PATH_LEN 256

typedef struct seg_spec {
    uint64_t vaddr, memsz, filesz;
} seg_spec;

typedef struct file_spec {
    uint64_t start, end, pgoff; /* pgoff in pages */
    const char *path;
} file_spec;

/* A byte of segment data, from its address. */
static uint8_t pat(uint64_t a) {
    return (uint8_t)(a ^ (a >> 8) ^ (a >> 16) ^ 0xa5);
}

static bool is_pattern(const uint8_t *b, uint64_t a, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (b[i] != pat(a + i)) {
            return false;
        }
    }
    return true;
}

static void put_bytes(sbuf *b, const void *p, size_t n) {
    sbuf_add(b, p, n);
}

static void put_zeros(sbuf *b, size_t n) {
    static const char zeros[64];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        sbuf_add(b, zeros, k);
        n -= k;
    }
}

/* Appends one note named "CORE" (padded to 4) with desc padded to 4. */
static void note(sbuf *b, uint32_t type, const void *desc, size_t len) {
    Elf64_Nhdr nh = {.n_namesz = 5, .n_descsz = (uint32_t)len, .n_type = type};
    put_bytes(b, &nh, sizeof nh);
    put_bytes(b, "CORE\0\0\0", 8);
    put_bytes(b, desc, len);
    put_zeros(b, (4 - len % 4) % 4);
}

static void note_prstatus(sbuf *b, int32_t tid) {
    uint8_t d[PRSTATUS_SIZE] = {0};
    memcpy(d + PRSTATUS_PID, &tid, 4);
    note(b, NT_PRSTATUS, d, sizeof d);
}

static void note_prpsinfo(sbuf *b, int32_t pid) {
    uint8_t d[PRPSINFO_SIZE] = {0};
    memcpy(d + PRPSINFO_PID, &pid, 4);
    note(b, NT_PRPSINFO, d, sizeof d);
}

/* NT_FILE: count, page size, {start, end, pgoff} each, then the names. */
static void note_file(sbuf *b, const file_spec *files, size_t n, uint64_t count) {
    sbuf d;
    sbuf_init(&d);
    uint64_t page = 4096;
    put_bytes(&d, &count, 8);
    put_bytes(&d, &page, 8);
    for (size_t i = 0; i < n; i++) {
        put_bytes(&d, &files[i].start, 8);
        put_bytes(&d, &files[i].end, 8);
        put_bytes(&d, &files[i].pgoff, 8);
    }
    for (size_t i = 0; i < n; i++) {
        put_bytes(&d, files[i].path, strlen(files[i].path) + 1);
    }
    note(b, NT_FILE, d.data, d.len);
    sbuf_free(&d);
}

/* One mapping of a file that does not exist, away from every segment. */
static void note_file_default(sbuf *b) {
    const file_spec lib = {0x7f0000000000ull, 0x7f0000001000ull, 0, "/nonexistent/snarl/lib.so"};
    note_file(b, &lib, 1, 1);
}

/* The notes most tests use: threads 201 and 202 of process 200. */
static void notes_default(sbuf *b) {
    note_prstatus(b, 201);
    note_prstatus(b, 202);
    note_prpsinfo(b, 200);
    note_file_default(b);
}

/* Writes an x86-64 ELF file of type e_type: a PT_NOTE with notes (none when
 * notes is NULL), then one PT_LOAD per segment whose file bytes are pat();
 * keeps only the first keep bytes when keep is non-zero. */
static bool write_elf(const char *path, uint16_t e_type, const sbuf *notes, const seg_spec *segs,
                      size_t nsegs, size_t keep) {
    size_t nph = (notes ? 1 : 0) + nsegs;
    size_t notes_off = sizeof(Elf64_Ehdr) + nph * sizeof(Elf64_Phdr);
    size_t notes_len = notes ? notes->len : 0;
    size_t data_off = (notes_off + notes_len + CORE_ALIGN - 1) & ~(size_t)(CORE_ALIGN - 1);
    Elf64_Ehdr eh = {0};
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = e_type;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = (uint16_t)nph;
    sbuf out;
    sbuf_init(&out);
    put_bytes(&out, &eh, sizeof eh);
    if (notes) {
        Elf64_Phdr ph = {
            .p_type = PT_NOTE, .p_offset = notes_off, .p_filesz = notes_len, .p_align = 4};
        put_bytes(&out, &ph, sizeof ph);
    }
    size_t off = data_off;
    for (size_t i = 0; i < nsegs; i++) {
        Elf64_Phdr ph = {.p_type = PT_LOAD,
                         .p_flags = PF_R,
                         .p_offset = off,
                         .p_vaddr = segs[i].vaddr,
                         .p_filesz = segs[i].filesz,
                         .p_memsz = segs[i].memsz,
                         .p_align = CORE_ALIGN};
        put_bytes(&out, &ph, sizeof ph);
        off += (segs[i].filesz + CORE_ALIGN - 1) & ~(size_t)(CORE_ALIGN - 1);
    }
    if (notes) {
        put_bytes(&out, notes->data, notes->len);
    }
    put_zeros(&out, data_off - out.len);
    for (size_t i = 0; i < nsegs; i++) {
        size_t padded = (segs[i].filesz + CORE_ALIGN - 1) & ~(size_t)(CORE_ALIGN - 1);
        for (size_t k = 0; k < padded; k++) {
            uint8_t c = k < segs[i].filesz ? pat(segs[i].vaddr + k) : 0;
            sbuf_add(&out, (const char *)&c, 1);
        }
    }
    FILE *fp = fopen(path, "wb");
    size_t len = keep && keep < out.len ? keep : out.len;
    bool ok = !out.oom && fp && fwrite(out.data, 1, len, fp) == len;
    if (fp && fclose(fp) != 0) {
        ok = false;
    }
    sbuf_free(&out);
    return ok;
}

/* path = scratch dir / name. */
static bool tmp_file(char *path, const char *name) {
    const char *dir = unit_tmpdir();
    return CHECK(dir != NULL) && snprintf(path, PATH_LEN, "%s/%s", dir, name) < PATH_LEN;
}

/* Opens a core written from notes and segments; NULL (err filled) on
 * failure. The file is removed at once: the backend keeps it open. */
static mem *open_core(err_record *err, const char *name, const sbuf *notes, const seg_spec *segs,
                      size_t nsegs, size_t keep) {
    char path[PATH_LEN];
    if (!tmp_file(path, name) || !CHECK(write_elf(path, ET_CORE, notes, segs, nsegs, keep))) {
        return NULL;
    }
    mem *m = mem_core_open(err, path, NULL, NULL);
    unit_ctx("%s: %s", name, m ? "opened" : err->msg);
    unlink(path);
    return m;
}

TEST(core_reads_inside_and_across_adjacent_segments) {
    const seg_spec segs[] = {
        {0x400000, 0x1000, 0x1000},
        {0x401000, 0x2000, 0x2000},
        {0x600000, 0x1000, 0x1000},
    };
    sbuf notes;
    sbuf_init(&notes);
    notes_default(&notes);
    err_record err = {0};
    mem *m = open_core(&err, "normal.core", &notes, segs, ARRAY_LEN(segs), 0);
    sbuf_free(&notes);
    if (!CHECK(m != NULL)) {
        return;
    }
    uint8_t b[64];
    CHECK_ERR(mem_read(m, 0x400100, 32, b), ERR_OK);
    CHECK(is_pattern(b, 0x400100, 32));
    CHECK_ERR(mem_read(m, 0x401000 - 24, sizeof b, b), ERR_OK); /* into the next segment */
    CHECK(is_pattern(b, 0x401000 - 24, sizeof b));
    CHECK_ERR(mem_read(m, 0x600ff0, 16, b), ERR_OK);
    CHECK(is_pattern(b, 0x600ff0, 16));
    uint8_t all[0x3000];
    CHECK_ERR(mem_read(m, 0x400000, sizeof all, all), ERR_OK);
    CHECK(is_pattern(all, 0x400000, sizeof all));
    CHECK_ERR(mem_read(m, 0x403000 - 8, 16, b), ERR_READ); /* runs into the gap */
    CHECK_ERR(mem_read(m, 0x500000, 8, b), ERR_READ);
    CHECK(!mem_core_truncated(m));
    CHECK_STR(m->ops->kind, "core");
    mem_close(m);
}

TEST(core_thread_ids_from_prstatus_and_pid_from_prpsinfo) {
    const seg_spec seg = {0x400000, 0x1000, 0x1000};
    sbuf notes;
    sbuf_init(&notes);
    notes_default(&notes);
    err_record err = {0};
    mem *m = open_core(&err, "ids.core", &notes, &seg, 1, 0);
    if (CHECK(m != NULL)) {
        CHECK_EQ(m->pid, 200);
        CHECK_EQ(m->tids.len, 2);
        if (m->tids.len == 2) {
            CHECK_EQ(*VEC_AT(&m->tids, int64_t, 0), 201);
            CHECK_EQ(*VEC_AT(&m->tids, int64_t, 1), 202);
        }
        CHECK_EQ(m->maps.len, 1);
        mem_close(m);
    }
    /* Without NT_PRPSINFO the process is its first thread. */
    sbuf_reset(&notes);
    note_prstatus(&notes, 301);
    note_prstatus(&notes, 302);
    note_file_default(&notes);
    m = open_core(&err, "ids2.core", &notes, &seg, 1, 0);
    if (CHECK(m != NULL)) {
        CHECK_EQ(m->pid, 301);
        CHECK_EQ(m->tids.len, 2);
        mem_close(m);
    }
    sbuf_free(&notes);
}

TEST(core_truncated_mid_segment_reads_only_the_present_part) {
    const seg_spec segs[] = {
        {0x400000, 0x1000, 0x1000},
        {0x500000, 0x3000, 0x3000},
    };
    sbuf notes;
    sbuf_init(&notes);
    notes_default(&notes);
    /* Data starts at 0x1000: segment 1 at 0x1000, segment 2 at 0x2000. */
    err_record err = {0};
    mem *m = open_core(&err, "truncated.core", &notes, segs, ARRAY_LEN(segs), 0x2000 + 0x1800);
    if (CHECK(m != NULL)) {
        CHECK(mem_core_truncated(m));
        uint8_t b[64];
        CHECK_ERR(mem_read(m, 0x400000, 16, b), ERR_OK);
        CHECK_ERR(mem_read(m, 0x501800 - 16, 16, b), ERR_OK);
        CHECK(is_pattern(b, 0x501800 - 16, 16));
        /* The present part of the cut page: the page read fails, the exact one not. */
        uint8_t part[0x800];
        CHECK_ERR(mem_read(m, 0x501000, sizeof part, part), ERR_OK);
        CHECK(is_pattern(part, 0x501000, sizeof part));
        CHECK_ERR(mem_read(m, 0x501800, 8, b), ERR_READ);
        CHECK_ERR(mem_read(m, 0x501800 - 8, 16, b), ERR_READ);
        CHECK_ERR(mem_read(m, 0x502000, 8, b), ERR_READ);
        mem_close(m);
    }
    /* Cut exactly where the second segment starts: all of it is missing. */
    m = open_core(&err, "truncated2.core", &notes, segs, ARRAY_LEN(segs), 0x2000);
    if (CHECK(m != NULL)) {
        CHECK(mem_core_truncated(m));
        uint8_t b[8];
        CHECK_ERR(mem_read(m, 0x400ff8, 8, b), ERR_OK);
        CHECK_ERR(mem_read(m, 0x500000, 8, b), ERR_READ);
        mem_close(m);
    }
    sbuf_free(&notes);
}

TEST(core_without_nt_file_is_rejected_naming_nt_file) {
    const seg_spec seg = {0x400000, 0x1000, 0x1000};
    sbuf notes;
    sbuf_init(&notes);
    note_prstatus(&notes, 7);
    note_prpsinfo(&notes, 7);
    err_record err = {0};
    mem *m = open_core(&err, "nofile.core", &notes, &seg, 1, 0);
    CHECK(m == NULL);
    CHECK_ERR(err.code, ERR_CORE);
    CHECK(strstr(err.msg, "NT_FILE") != NULL);
    mem_close(m);
    /* No note segment at all. */
    err_clear(&err);
    m = open_core(&err, "nonotes.core", NULL, &seg, 1, 0);
    CHECK(m == NULL);
    CHECK_ERR(err.code, ERR_CORE);
    CHECK(strstr(err.msg, "NT_FILE") != NULL);
    mem_close(m);
    sbuf_free(&notes);
}

TEST(core_nt_file_with_absurd_count_or_names_is_rejected) {
    const seg_spec seg = {0x400000, 0x1000, 0x1000};
    const file_spec lib = {0x7f0000000000ull, 0x7f0000001000ull, 0, "/lib.so"};
    const uint64_t counts[] = {(uint64_t)1 << 40, UINT64_MAX, 1000, 2};
    for (size_t i = 0; i < ARRAY_LEN(counts); i++) {
        sbuf notes;
        sbuf_init(&notes);
        note_prstatus(&notes, 7);
        note_file(&notes, &lib, 1, counts[i]);
        err_record err = {0};
        mem *m = open_core(&err, "badcount.core", &notes, &seg, 1, 0);
        unit_ctx("count %llu: %s", (unsigned long long)counts[i], err.msg);
        CHECK(m == NULL);
        CHECK_ERR(err.code, ERR_CORE);
        CHECK(strstr(err.msg, "NT_FILE") != NULL);
        mem_close(m);
        sbuf_free(&notes);
    }
    /* A name without its NUL: cut the note's last byte. */
    sbuf d;
    sbuf_init(&d);
    uint64_t hdr[5] = {1, 4096, lib.start, lib.end, 0};
    put_bytes(&d, hdr, sizeof hdr);
    put_bytes(&d, "/lib.so", 7);
    sbuf notes;
    sbuf_init(&notes);
    note(&notes, NT_FILE, d.data, d.len);
    err_record err = {0};
    mem *m = open_core(&err, "badname.core", &notes, &seg, 1, 0);
    CHECK(m == NULL);
    CHECK_ERR(err.code, ERR_CORE);
    CHECK(strstr(err.msg, "NT_FILE") != NULL);
    mem_close(m);
    sbuf_free(&notes);
    sbuf_free(&d);
}

TEST(core_bytes_beyond_filesz_are_unreadable_without_the_mapped_file) {
    const seg_spec seg = {0x500000, 0x2000, 0x1000};
    const file_spec lib = {0x500000, 0x502000, 1, "/nonexistent/snarl/libgone.so"};
    sbuf notes;
    sbuf_init(&notes);
    note_prstatus(&notes, 9);
    note_file(&notes, &lib, 1, 1);
    err_record err = {0};
    mem *m = open_core(&err, "memsz.core", &notes, &seg, 1, 0);
    sbuf_free(&notes);
    if (!CHECK(m != NULL)) {
        return;
    }
    uint8_t b[16];
    CHECK_ERR(mem_read(m, 0x500ff0, 16, b), ERR_OK);
    CHECK(is_pattern(b, 0x500ff0, 16));
    CHECK_ERR(mem_read(m, 0x501000, 8, b), ERR_READ);
    CHECK_ERR(mem_read(m, 0x500ff8, 16, b), ERR_READ);
    CHECK(!mem_core_truncated(m));
    const mem_map *mp = mem_find_map(m, 0x501000);
    CHECK(mp && mp->status == MEM_FILE_MISSING && mp->local == NULL);
    mem_close(m);
}

TEST(core_bytes_beyond_filesz_come_from_the_mapped_file) {
    char data_path[PATH_LEN];
    if (!tmp_file(data_path, "mapped.bin")) {
        return;
    }
    /* Three pages: byte k of the file is (k * 7) ^ (k >> 8). */
    enum { DATA_LEN = 3 * 4096 };
    uint8_t *data = malloc(DATA_LEN);
    FILE *fp = fopen(data_path, "wb");
    bool written = data && fp;
    for (size_t k = 0; written && k < DATA_LEN; k++) {
        data[k] = (uint8_t)((k * 7) ^ (k >> 8));
    }
    written = written && fwrite(data, 1, DATA_LEN, fp) == DATA_LEN;
    if (fp) {
        written = fclose(fp) == 0 && written;
    }
    if (!CHECK(written)) {
        free(data);
        unlink(data_path);
        return;
    }
    /* The mapping starts at file page 1; the core holds its first page. */
    const seg_spec seg = {0x500000, 0x2000, 0x1000};
    const file_spec lib = {0x500000, 0x502000, 1, data_path};
    sbuf notes;
    sbuf_init(&notes);
    note_prstatus(&notes, 9);
    note_file(&notes, &lib, 1, 1);
    err_record err = {0};
    mem *m = open_core(&err, "filebacked.core", &notes, &seg, 1, 0);
    sbuf_free(&notes);
    if (CHECK(m != NULL)) {
        const mem_map *mp = mem_find_map(m, 0x501000);
        CHECK(mp && mp->status == MEM_FILE_UNVERIFIED && mp->local != NULL);
        uint8_t b[32];
        /* 0x501010 is 0x1010 into the mapping: file offset 0x1000 + 0x1010. */
        CHECK_ERR(mem_read(m, 0x501010, 16, b), ERR_OK);
        CHECK(memcmp(b, data + 0x2010, 16) == 0);
        /* Across p_filesz: eight bytes from the core, eight from the file. */
        CHECK_ERR(mem_read(m, 0x500ff8, 16, b), ERR_OK);
        CHECK(is_pattern(b, 0x500ff8, 8));
        CHECK(memcmp(b + 8, data + 0x2000, 8) == 0);
        CHECK_ERR(mem_read(m, 0x501ff8, 16, b), ERR_READ); /* past p_memsz */
        mem_close(m);
    }
    free(data);
    unlink(data_path);
}

TEST(core_mapping_with_no_segment_at_all_reads_from_the_mapped_file) {
    /* gcore leaves read-only file mappings out of the core entirely (no
     * PT_LOAD), where the kernel writes p_filesz 0: both must read from the
     * file NT_FILE names. */
    char data_path[PATH_LEN];
    if (!tmp_file(data_path, "rodata.bin")) {
        return;
    }
    uint8_t data[2 * 4096];
    for (size_t k = 0; k < sizeof data; k++) {
        data[k] = (uint8_t)(k * 13);
    }
    FILE *fp = fopen(data_path, "wb");
    bool written = fp && fwrite(data, 1, sizeof data, fp) == sizeof data;
    if (fp) {
        written = fclose(fp) == 0 && written;
    }
    if (!CHECK(written)) {
        unlink(data_path);
        return;
    }
    /* A writable segment below and above the file mapping, none over it. */
    const seg_spec segs[] = {{0x400000, 0x1000, 0x1000}, {0x403000, 0x1000, 0x1000}};
    const file_spec ro = {0x401000, 0x403000, 0, data_path};
    sbuf notes;
    sbuf_init(&notes);
    note_prstatus(&notes, 9);
    note_file(&notes, &ro, 1, 1);
    err_record err = {0};
    mem *m = open_core(&err, "gcorestyle.core", &notes, segs, 2, 0);
    sbuf_free(&notes);
    if (CHECK(m != NULL)) {
        uint8_t b[32];
        CHECK_ERR(mem_read(m, 0x401100, 16, b), ERR_OK);
        CHECK(memcmp(b, data + 0x100, 16) == 0);
        /* From the file into the next segment, in one read. */
        CHECK_ERR(mem_read(m, 0x402ff8, 16, b), ERR_OK);
        CHECK(memcmp(b, data + 0x1ff8, 8) == 0);
        CHECK(is_pattern(b + 8, 0x403000, 8));
        CHECK_ERR(mem_read(m, 0x404000, 8, b), ERR_READ); /* nothing there */
        mem_close(m);
    }
    unlink(data_path);
}

TEST(core_open_rejects_files_that_are_not_sound_x86_64_cores) {
    char path[PATH_LEN];
    if (!tmp_file(path, "notcore")) {
        return;
    }
    err_record err = {0};
    /* Text. */
    FILE *fp = fopen(path, "wb");
    if (CHECK(fp != NULL)) {
        fputs("this is not an ELF file at all, just some text\n", fp);
        fclose(fp);
    }
    CHECK(mem_core_open(&err, path, NULL, NULL) == NULL);
    CHECK_ERR(err.code, ERR_CORE);
    CHECK(strstr(err.msg, "not an ELF") != NULL);
    /* Empty. */
    fp = fopen(path, "wb");
    if (CHECK(fp != NULL)) {
        fclose(fp);
    }
    err_clear(&err);
    CHECK(mem_core_open(&err, path, NULL, NULL) == NULL);
    CHECK_ERR(err.code, ERR_CORE);
    /* An executable, not a core. */
    const seg_spec seg = {0x400000, 0x1000, 0x1000};
    sbuf notes;
    sbuf_init(&notes);
    notes_default(&notes);
    CHECK(write_elf(path, ET_EXEC, &notes, &seg, 1, 0));
    err_clear(&err);
    CHECK(mem_core_open(&err, path, NULL, NULL) == NULL);
    CHECK_ERR(err.code, ERR_CORE);
    CHECK(strstr(err.msg, "not a core") != NULL);
    /* A core of another machine. */
    CHECK(write_elf(path, ET_CORE, &notes, &seg, 1, 0));
    fp = fopen(path, "r+b");
    uint16_t machine = EM_AARCH64;
    if (CHECK(fp != NULL)) {
        fseek(fp, (long)offsetof(Elf64_Ehdr, e_machine), SEEK_SET);
        fwrite(&machine, sizeof machine, 1, fp);
        fclose(fp);
    }
    err_clear(&err);
    CHECK(mem_core_open(&err, path, NULL, NULL) == NULL);
    CHECK_ERR(err.code, ERR_UNSUPPORTED);
    /* A core claiming 60000 program headers in a file of a few pages. */
    CHECK(write_elf(path, ET_CORE, &notes, &seg, 1, 0));
    fp = fopen(path, "r+b");
    uint16_t phnum = 60000;
    if (CHECK(fp != NULL)) {
        fseek(fp, (long)offsetof(Elf64_Ehdr, e_phnum), SEEK_SET);
        fwrite(&phnum, sizeof phnum, 1, fp);
        fclose(fp);
    }
    err_clear(&err);
    CHECK(mem_core_open(&err, path, NULL, NULL) == NULL);
    CHECK_ERR(err.code, ERR_CORE);
    sbuf_free(&notes);
    unlink(path);
    /* Missing, and a directory. */
    err_clear(&err);
    CHECK(mem_core_open(&err, path, NULL, NULL) == NULL);
    CHECK_ERR(err.code, ERR_NO_FILE);
    err_clear(&err);
    CHECK(mem_core_open(&err, unit_tmpdir(), NULL, NULL) == NULL);
    CHECK_ERR(err.code, ERR_USAGE);
}

TEST(core_entry_point_names_the_executable_mapping) {
    const seg_spec seg = {0x400000, 0x1000, 0x1000};
    const file_spec files[] = {
        {0x7f0000000000ull, 0x7f0000002000ull, 0, "/nonexistent/libpython3.12.so"},
        {0x555555554000ull, 0x555555556000ull, 0, "/nonexistent/bin/python3.12"},
    };
    sbuf notes;
    sbuf_init(&notes);
    note_prstatus(&notes, 5);
    note_file(&notes, files, 2, 2);
    const uint64_t auxv[] = {AT_PHDR, 0x555555554040ull, AT_ENTRY, 0x555555555100ull, AT_NULL, 0};
    note(&notes, NT_AUXV, auxv, sizeof auxv);
    err_record err = {0};
    mem *m = open_core(&err, "auxv.core", &notes, &seg, 1, 0);
    sbuf_free(&notes);
    if (CHECK(m != NULL)) {
        CHECK_STR(m->executable, "/nonexistent/bin/python3.12");
        /* Sorted by address: the executable's mapping comes first. */
        CHECK(m->maps.len == 2 && VEC_AT(&m->maps, mem_map, 0)->start == 0x555555554000ull);
        mem_close(m);
    }
}
