/* Live-process backend: reads with process_vm_readv (falling back to
 * /proc/PID/mem), maps from /proc/PID/maps, threads from /proc/PID/task.
 * Freezing uses PTRACE_SEIZE + PTRACE_INTERRUPT so the kernel resumes every
 * thread if snarl dies; nothing is ever written to the target. */
#include "mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Threads we freeze at most; a Python process with more threads than this is
 * read without freezing the rest (reported by the caller). */
#define LIVE_FREEZE_MAX 4096
/* Rounds of re-listing /proc/PID/task while threads keep appearing. */
#define LIVE_FREEZE_ROUNDS 8
/* How long we wait for one thread to reach its ptrace stop (a thread in
 * uninterruptible sleep may never stop; we then read without it). */
#define LIVE_STOP_WAIT_MS 2000
/* Lines of /proc/PID/maps we keep; far above any real process. */
#define LIVE_MAPS_MAX 262144
/* Cache line of a live read (16 KiB): a task, its coroutine and its frame
 * usually sit within a few pages of each other, and one process_vm_readv of
 * four pages costs little more than one of a page, so the neighbourhood
 * comes in one call (measured in tests/bench/README.md). */
#define LIVE_BLOCK (4u * MEM_PAGE_SIZE)
/* Cache size for live reads (16 MiB, in huge pages): the lines are four
 * times larger than mem_new's; filling it page by page faulted once per
 * 4 KiB, a third of the time of `check` at 10,000 tasks. */
#define LIVE_CACHE_BYTES (16u << 20)

typedef struct mem_live {
    mem base;
    int mem_fd;
    bool use_vm_readv;
    bool frozen;
} mem_live;

/* Threads currently seized by this process, for the async-signal-safe
 * emergency thaw. Written only outside signal handlers. */
static volatile pid_t live_seized[LIVE_FREEZE_MAX];
static volatile int live_nseized;

void snarl_emergency_thaw(void) {
    int n = live_nseized;
    for (int i = 0; i < n && i < LIVE_FREEZE_MAX; i++) {
        if (live_seized[i] > 0) {
            ptrace(PTRACE_DETACH, live_seized[i], NULL, NULL);
        }
    }
    live_nseized = 0;
}

static err_t live_read(mem *m, uint64_t addr, size_t len, void *dst) {
    mem_live *l = (mem_live *)m;
    if (l->use_vm_readv) {
        struct iovec local = {dst, len};
        struct iovec remote = {(void *)(uintptr_t)addr, len};
        ssize_t n = process_vm_readv(m->pid, &local, 1, &remote, 1, 0);
        if (n == (ssize_t)len) {
            return ERR_OK;
        }
        if (n < 0 && (errno == ENOSYS || errno == EPERM)) {
            l->use_vm_readv = false; /* e.g. seccomp or an old kernel */
        } else {
            /* ESRCH: no such process, or one whose memory is already torn
             * down (killed, a zombie not yet reaped). */
            m->gone |= n < 0 && errno == ESRCH;
            return ERR_READ;
        }
    }
    if (l->mem_fd < 0) {
        return ERR_READ;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(l->mem_fd, (char *)dst + done, len - done, (off_t)(addr + done));
        if (n <= 0) {
            /* A process whose memory is gone reads as end of file. */
            m->gone |= n == 0 || errno == ESRCH;
            return ERR_READ;
        }
        done += (size_t)n;
    }
    return ERR_OK;
}

static err_t live_list_tids(mem *m) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", m->pid);
    DIR *d = opendir(path);
    if (!d) {
        return errno == ENOENT ? err_set(m->err, ERR_GONE, "process %d exited", m->pid)
                               : err_set(m->err, ERR_IO, "cannot list %s: %s", path,
                                         strerror(errno));
    }
    m->tids.len = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long tid = strtol(de->d_name, &end, 10);
        if (*end || tid <= 0) {
            continue;
        }
        int64_t *slot = vec_push(&m->tids);
        if (!slot) {
            closedir(d);
            return err_set(m->err, ERR_NOMEM, NULL);
        }
        *slot = tid;
    }
    closedir(d);
    return ERR_OK;
}

static err_t live_read_maps(mem *m) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", m->pid);
    FILE *f = fopen(path, "re");
    if (!f) {
        return err_set(m->err, errno == EACCES ? ERR_PERM : ERR_IO, "cannot read %s: %s", path,
                       strerror(errno));
    }
    char line[4096 + 256];
    size_t n = 0;
    err_t e = ERR_OK;
    while (fgets(line, sizeof line, f) && n++ < LIVE_MAPS_MAX) {
        unsigned long long start, end, off;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %n", &start, &end, perms, &off, &name_at) < 4 ||
            name_at == 0) {
            continue;
        }
        char *name = line + name_at;
        name[strcspn(name, "\n")] = '\0';
        if (name[0] != '/') {
            continue; /* anonymous, [heap], [stack], [vdso]... */
        }
        /* A replaced file shows " (deleted)"; keep the path, it will not resolve. */
        if ((e = mem_add_map(m, start, end, off, name)) != ERR_OK) {
            break;
        }
    }
    fclose(f);
    mem_sort_maps(m);
    return e;
}

static bool live_wait_stop(pid_t tid) {
    struct timespec ts = {0, 1000000};
    for (int waited = 0; waited < LIVE_STOP_WAIT_MS; waited++) {
        int status;
        pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
        if (r == tid) {
            return WIFSTOPPED(status);
        }
        if (r < 0) {
            return false;
        }
        nanosleep(&ts, NULL);
    }
    return false;
}

static void live_thaw(mem *m) {
    mem_live *l = (mem_live *)m;
    if (!l->frozen) {
        return;
    }
    snarl_emergency_thaw();
    l->frozen = false;
}

static bool live_is_seized(pid_t tid) {
    for (int i = 0; i < live_nseized; i++) {
        if (live_seized[i] == tid) {
            return true;
        }
    }
    return false;
}

static err_t live_freeze(mem *m) {
    mem_live *l = (mem_live *)m;
    if (l->frozen) {
        return ERR_OK;
    }
    live_nseized = 0;
    l->frozen = true;
    for (int round = 0; round < LIVE_FREEZE_ROUNDS; round++) {
        err_t e = live_list_tids(m);
        if (e != ERR_OK) {
            live_thaw(m);
            return e;
        }
        bool added = false;
        for (size_t i = 0; i < m->tids.len; i++) {
            pid_t tid = (pid_t)*VEC_AT(&m->tids, int64_t, i);
            if (live_is_seized(tid) || live_nseized >= LIVE_FREEZE_MAX) {
                continue;
            }
            if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) != 0) {
                int en = errno;
                if (en == ESRCH) {
                    continue; /* the thread exited meanwhile */
                }
                live_thaw(m);
                if (en == EPERM && live_nseized == 0) {
                    /* EPERM on a process we could read: someone else traces it,
                     * or ptrace is restricted for us. */
                    char st[64];
                    snprintf(st, sizeof st, "/proc/%d/status", m->pid);
                    FILE *f = fopen(st, "re");
                    long tracer = 0;
                    char line[256];
                    while (f && fgets(line, sizeof line, f)) {
                        if (sscanf(line, "TracerPid: %ld", &tracer) == 1) {
                            break;
                        }
                    }
                    if (f) {
                        fclose(f);
                    }
                    if (tracer > 0) {
                        return err_set(m->err, ERR_BUSY,
                                       "process %d is already traced by process %ld", m->pid,
                                       tracer);
                    }
                }
                return err_set(m->err, en == EPERM ? ERR_PERM : ERR_IO,
                               "cannot freeze thread %d of process %d: %s", tid, m->pid,
                               strerror(en));
            }
            live_seized[live_nseized] = tid;
            live_nseized = live_nseized + 1;
            added = true;
            if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) == 0) {
                live_wait_stop(tid);
            }
        }
        if (!added) {
            return ERR_OK;
        }
    }
    return ERR_OK;
}

static void live_close(mem *m) {
    mem_live *l = (mem_live *)m;
    if (l->mem_fd >= 0) {
        close(l->mem_fd);
    }
    util_free(l);
}

static const mem_ops live_ops = {
    .kind = "live",
    .read = live_read,
    .freeze = live_freeze,
    .thaw = live_thaw,
    .close = live_close,
};

mem *mem_live_open(err_record *err, int pid, bool freeze) {
    (void)freeze; /* the caller freezes around each analysis with mem_freeze */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", pid);
    struct stat st;
    if (pid <= 0 || stat(path, &st) != 0) {
        err_set(err, ERR_NO_PROCESS, "no process with PID %d", pid);
        return NULL;
    }
    mem_live *l = (mem_live *)mem_new(err, &live_ops, sizeof *l);
    if (!l) {
        return NULL;
    }
    mem *m = &l->base;
    m->pid = pid;
    l->use_vm_readv = true;
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    l->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
    int open_errno = errno;
    char exe[4096];
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        m->executable = util_strdup(exe);
    }
    err_t e = live_read_maps(m);
    if (e == ERR_OK) {
        e = live_list_tids(m);
    }
    if (e == ERR_OK) {
        /* Probe one read: permission problems show here, not at ptrace. */
        uint8_t probe[8];
        const mem_map *first = m->maps.len ? VEC_AT(&m->maps, mem_map, 0) : NULL;
        if (first && live_read(m, first->start, sizeof probe, probe) != ERR_OK) {
            e = err_set(err, ERR_PERM, "cannot read the memory of process %d: %s", pid,
                        strerror(l->mem_fd < 0 ? open_errno : EPERM));
        }
    }
    if (e != ERR_OK) {
        mem_close(m);
        return NULL;
    }
    snprintf(path, sizeof path, "/proc/%d/root", pid);
    mem_resolve_files(m, NULL, path, NULL, mem_map_build_id);
    /* Without the larger cache, mem_new's page cache still works. */
    if (mem_set_block(m, LIVE_BLOCK, LIVE_CACHE_BYTES, true) != ERR_OK) {
        err_clear(err);
    }
    return m;
}
