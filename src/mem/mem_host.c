/* Host-callback backend: a debugger (gdb, lldb) supplies memory, mappings and
 * threads through snarl_host, so snarl reads wherever the debugger can (cores,
 * live, remote). The cache in front turns many small reads into few large
 * ones; in a core, pages the debugger cannot supply are read from the mapped
 * files this machine has, as the core backend does. */
#include "mem.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "../snarl.h"

/* Cache size when the host reads in blocks (512 MiB of address space): the
 * cache should hold a large target's whole heap, or a walk over it evicts
 * and re-reads blocks at a debugger call each (a 100,000-task heap is about
 * 140 MB). The kernel backs only the lines a run touches, and the cache is
 * freed with the session. Halved until the allocation succeeds. */
#define HOST_CACHE_BYTES (512u << 20)

typedef struct mem_host {
    mem base;
    snarl_host host;
    int *map_fds; /* per mapping: its local file, opened on first use; -1 */
} mem_host;

/* Reads [addr, addr+len) from the local copy of the one file mapping that
 * holds it: what a core leaves out of a file mapping is the file's content. */
static err_t host_read_file(mem_host *h, uint64_t addr, size_t len, void *dst) {
    mem *m = &h->base;
    const mem_map *mp = mem_find_map(m, addr);
    if (!mp || !mp->local || len > mp->end - addr || !h->map_fds) {
        return ERR_READ;
    }
    size_t idx = (size_t)(mp - VEC_AT(&m->maps, mem_map, 0));
    if (h->map_fds[idx] == -1) {
        int fd = open(mp->local, O_RDONLY | O_CLOEXEC);
        h->map_fds[idx] = fd < 0 ? -2 : fd; /* -2: tried, not openable */
    }
    if (h->map_fds[idx] < 0) {
        return ERR_READ;
    }
    uint8_t *out = dst;
    uint64_t off = mp->offset + (addr - mp->start);
    while (len > 0) {
        ssize_t n = pread(h->map_fds[idx], out, len, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return ERR_READ; /* past the file's end: bss, not file content */
        }
        out += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return ERR_OK;
}

static err_t host_read(mem *m, uint64_t addr, size_t len, void *dst) {
    mem_host *h = (mem_host *)m;
    if (h->host.read(h->host.ctx, addr, len, dst) == 0) {
        return ERR_OK;
    }
    /* A live process has nothing more to give: a failed read is unmapped. */
    return h->host.is_core ? host_read_file(h, addr, len, dst) : ERR_READ;
}

static void host_close(mem *m) {
    mem_host *h = (mem_host *)m;
    for (size_t i = 0; h->map_fds && i < m->maps.len; i++) {
        if (h->map_fds[i] >= 0) {
            close(h->map_fds[i]);
        }
    }
    util_free(h->map_fds);
    util_free(m);
}

/* Only a local live target's PID can be looked up in this machine's /proc. */
static bool host_exited(mem *m) {
    const snarl_host *host = &((mem_host *)m)->host;
    return host->local && !host->is_core && m->pid > 0 && mem_proc_exited(m->pid, m->start);
}

static const mem_ops host_ops = {
    .kind = "host",
    .read = host_read,
    .close = host_close,
    .exited = host_exited,
};

static int host_add_map(void *ctx, const snarl_mapping *mp) {
    mem *m = ctx;
    if (!mp || !mp->path || mp->path[0] != '/' || mp->end <= mp->start) {
        return 0;
    }
    return mem_add_map(m, mp->start, mp->end, mp->offset, mp->path) == ERR_OK ? 0 : -1;
}

static int host_add_tid(void *ctx, int64_t tid) {
    mem *m = ctx;
    int64_t *slot = vec_push(&m->tids);
    if (!slot) {
        return -1;
    }
    *slot = tid;
    return 0;
}

mem *mem_host_open(err_record *err, const snarl_host *host, const char *sysroot) {
    if (!host || !host->read || !host->mappings) {
        err_set(err, ERR_USAGE, "the host must supply read and mappings callbacks");
        return NULL;
    }
    mem_host *h = (mem_host *)mem_new(err, &host_ops, sizeof *h);
    if (!h) {
        return NULL;
    }
    mem *m = &h->base;
    h->host = *host;
    m->pid = host->pid;
    if (host->local && !host->is_core) {
        m->start = mem_proc_start(host->pid);
    }
    if (host->executable) {
        m->executable = util_strdup(host->executable);
    }
    if (host->mappings(host->ctx, host_add_map, m) != 0 && err->code == ERR_OK) {
        err_set(err, ERR_IO, "the debugger could not list the target's mappings");
    }
    if (err->code == ERR_OK && host->threads) {
        host->threads(host->ctx, host_add_tid, m);
    }
    if (err->code != ERR_OK) {
        mem_close(m);
        return NULL;
    }
    mem_sort_maps(m);
    mem_resolve_files(m, sysroot, NULL, NULL, mem_map_build_id);
    h->map_fds = util_alloc((m->maps.len ? m->maps.len : 1) * sizeof *h->map_fds);
    if (!h->map_fds) {
        err_set(err, ERR_NOMEM, NULL);
        mem_close(m);
        return NULL;
    }
    for (size_t i = 0; i < m->maps.len; i++) {
        h->map_fds[i] = -1;
    }
    if (host->block_size > MEM_PAGE_SIZE) {
        size_t bytes = HOST_CACHE_BYTES;
        while (mem_set_block(m, host->block_size, bytes, false) != ERR_OK &&
               bytes > MEM_CACHE_PAGES * MEM_PAGE_SIZE) {
            bytes /= 2;
        }
        /* Whatever failed, the page cache mem_new made is still in place. */
        err_clear(err);
    }
    return m;
}
