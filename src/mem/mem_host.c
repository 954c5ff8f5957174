/* Host-callback backend: a debugger (gdb, lldb) supplies memory, mappings and
 * threads through snarl_host, so snarl reads wherever the debugger can (cores,
 * live, remote). The page cache in front turns many small reads into few. */
#include "mem.h"

#include "../snarl.h"

typedef struct mem_host {
    mem base;
    snarl_host host;
} mem_host;

static err_t host_read(mem *m, uint64_t addr, size_t len, void *dst) {
    mem_host *h = (mem_host *)m;
    return h->host.read(h->host.ctx, addr, len, dst) == 0 ? ERR_OK : ERR_READ;
}

static void host_close(mem *m) {
    util_free(m);
}

static const mem_ops host_ops = {
    .kind = "host",
    .read = host_read,
    .close = host_close,
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
    return m;
}
