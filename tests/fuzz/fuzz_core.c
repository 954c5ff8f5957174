/* libFuzzer target: the ELF core parser (mem_core.c) and what follows from
 * it, on a core file's bytes: program headers, PT_LOAD p_filesz against
 * p_memsz and the file size, the notes (NT_PRSTATUS, NT_PRPSINFO, NT_AUXV,
 * NT_FILE), build-ids read from the core's memory, reads that cross or fall
 * between segments or come from the mapped files, then attaching the engine
 * (symbols, the Python runtime) and a stacks run. The input is handed to the
 * parser as a memory file, as a core on disk would be. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fz_image.h"

/* Mappings and threads whose edges we read; the core may claim millions. */
#define FZ_CORE_PROBES_MAX 256

static int fz_sink(void *ctx, const char *data, size_t len) {
    (void)ctx;
    (void)data;
    (void)len;
    return 0;
}

/* Reads around an address: the byte, a page across it, a read ending on it. */
static void fz_probe(mem *m, uint64_t addr) {
    uint8_t buf[2 * MEM_PAGE_SIZE];
    mem_read(m, addr, 1, buf);
    mem_read(m, addr - 8, 16, buf);
    mem_read(m, addr, sizeof buf, buf);
    mem_read_cstr(m, addr, (char *)buf, 64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz-core", MFD_CLOEXEC);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
        abort();
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    err_record err;
    err_clear(&err);
    mem *m = mem_core_open(&err, path, NULL, NULL);
    if (!m) {
        if (!err.msg[0] && err.code != ERR_NOMEM) {
            fprintf(stderr, "fuzz_core: open failed without a sentence (code %d)\n", err.code);
            abort();
        }
        close(fd);
        return 0;
    }
    (void)mem_core_truncated(m);
    for (size_t i = 0; i < m->maps.len && i < FZ_CORE_PROBES_MAX; i++) {
        const mem_map *mp = VEC_AT(&m->maps, mem_map, i);
        uint8_t id[MEM_BUILD_ID_MAX];
        mem_target_build_id(m, mp->start, id, sizeof id);
        fz_probe(m, mp->start);
        fz_probe(m, mp->end);
        (void)mem_find_map(m, mp->end - 1);
    }
    snarl_session *s = snarl_open(NULL);
    if (!s) {
        mem_close(m);
    } else if (engine_attach_mem(s, m, "core", NULL) == 0) {
        snarl_request req = {.command = "stacks"};
        int st = snarl_run(s, &req, fz_sink, NULL);
        if (st < 0 || st > 2 || (st == 2 && !snarl_error(s)[0])) {
            fprintf(stderr, "fuzz_core: status %d, error '%s'\n", st, snarl_error(s));
            abort();
        }
    }
    snarl_close(s);
    close(fd);
    return 0;
}
