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
/* The kernel's PF_EXITING in the flags of /proc/PID/stat: set as a thread
 * begins to exit, before its memory goes. */
#define LIVE_PF_EXITING 0x4ul
/* Bytes of /proc/PID/stat we read: the fields up to the start time, after
 * a command name of at most 64 bytes, fit with room to spare. */
#define LIVE_STAT_BYTES 1024
/* Cache line of a live read (16 KiB): a task, its coroutine and its frame
 * usually sit within a few pages of each other, and one process_vm_readv of
 * four pages costs little more than one of a page, so the neighbourhood
 * comes in one call (measured in tests/bench/README.md). */
#define LIVE_BLOCK (4u * MEM_PAGE_SIZE)
/* Cache size for live reads (4 MiB, in huge pages): the lines are four
 * times larger than mem_new's; filling it page by page faulted once per
 * 4 KiB, a third of the time of `check` at 10,000 tasks. Not larger: the
 * passes stream through the target's heap, so 16 MiB missed only 3 % less
 * than 4 MiB at 100,000 tasks, cost 12 MB more and was slower, its lines
 * falling out of the processor's own caches (tests/bench/README.md). */
#define LIVE_CACHE_BYTES (4u << 20)

typedef struct mem_live {
    mem base;
    int mem_fd;
    bool use_vm_readv;
    bool frozen;
    int read_errno; /* of the last failed read */
} mem_live;

void (*mem_live_test_hook)(int pid, const char *point);

static void live_hook(int pid, const char *point) {
    if (mem_live_test_hook) {
        mem_live_test_hook(pid, point);
    }
}

/* What /proc/PID[/task/TID]/stat says of one thread. */
typedef struct live_stat {
    char state;
    int ppid;
    unsigned long flags;
    unsigned long long start;
} live_stat;

static bool live_read_stat(const char *path, live_stat *st) {
    char buf[LIVE_STAT_BYTES];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return false;
    }
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: the fields start
     * after the last ')'. */
    const char *paren = strrchr(buf, ')');
    return paren && sscanf(paren + 1,
                           " %c %d %*s %*s %*s %*s %lu %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
                           "%*s %*s %llu",
                           &st->state, &st->ppid, &st->flags, &st->start) == 4;
}

/* SIGKILL pending on one thread (SigPnd of its status) or on its group
 * (ShdPnd): a fatal signal, exit_group or a core dump puts it on every thread
 * of the group at once. The thread takes it off its own set as it begins to
 * die, a moment before the kernel marks it exiting; the group's set keeps it,
 * so the two together leave no instant where a dying process looks alive. */
static bool live_kill_pending(int pid, int tid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/task/%d/status", pid, tid);
    FILE *f = fopen(path, "re");
    unsigned long long pending = 0, set;
    int seen = 0;
    while (f && seen < 2 && fgets(line, sizeof line, f)) {
        if (sscanf(line, "SigPnd: %llx", &set) == 1 || sscanf(line, "ShdPnd: %llx", &set) == 1) {
            pending |= set;
            seen++;
        }
    }
    if (f) {
        fclose(f);
    }
    return (pending >> (SIGKILL - 1)) & 1;
}

/* A thread that will still run: listed, not a zombie nor dead, not exiting,
 * not bound to die. */
static bool live_thread_alive(int pid, int tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
    live_stat st;
    return live_read_stat(path, &st) && st.state != 'Z' && st.state != 'X' &&
           !(st.flags & LIVE_PF_EXITING) && !live_kill_pending(pid, tid);
}

uint64_t mem_proc_start(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    live_stat st;
    return pid > 0 && live_read_stat(path, &st) ? st.start : 0;
}

bool mem_proc_exited(int pid, uint64_t start) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    live_stat st;
    if (pid <= 0 || !live_read_stat(path, &st)) {
        /* Gone for good only when the kernel knows no such PID: /proc
         * mounted with hidepid hides processes that still run. */
        return pid > 0 && kill(pid, 0) != 0 && errno == ESRCH;
    }
    if (start && st.start != start) {
        return true; /* reaped, and its PID given to another process */
    }
    if (live_thread_alive(pid, pid)) {
        return false;
    }
    /* The main thread is gone or going; the process lives on while another
     * thread does (a main thread may end alone, with pthread_exit). */
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    bool alive = false;
    struct dirent *de;
    for (int k = 0; d && !alive && k < LIVE_FREEZE_MAX && (de = readdir(d)) != NULL; k++) {
        char *end;
        long tid = strtol(de->d_name, &end, 10);
        alive = !*end && tid > 0 && tid != pid && live_thread_alive(pid, (int)tid);
    }
    if (d) {
        closedir(d);
    }
    return !alive;
}

static bool live_exited(mem *m) {
    return mem_proc_exited(m->pid, m->start);
}

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
    live_hook(m->pid, "read");
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
            l->read_errno = n < 0 ? errno : EFAULT;
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
            l->read_errno = n < 0 ? errno : ESRCH;
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
        return errno == ENOENT
                   ? err_set(m->err, ERR_GONE, "process %d exited while it was being read", m->pid)
                   : err_set(m->err, ERR_IO, "cannot list %s: %s", path, strerror(errno));
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

/* Waits for a seized thread's interrupt stop. Only stops are taken, never an
 * exit: the exit status of a thread that dies meanwhile stays for whoever
 * waits for it (under `snarl watch` the target is our own child, and its
 * status is the command's). */
static bool live_wait_stop(pid_t pid, pid_t tid) {
    struct timespec ts = {0, 1000000};
    for (int waited = 0; waited < LIVE_STOP_WAIT_MS; waited++) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)tid, &si, WEXITED | WSTOPPED | WNOHANG | WNOWAIT | __WALL) != 0) {
            return false;
        }
        if (si.si_pid == tid) {
            if (si.si_code != CLD_TRAPPED && si.si_code != CLD_STOPPED) {
                return false; /* it exited: leave the status where it is */
            }
            memset(&si, 0, sizeof si);
            return waitid(P_PID, (id_t)tid, &si, WSTOPPED | WNOHANG | __WALL) == 0 &&
                   si.si_pid == tid;
        }
        if (waited % 16 == 15 && !live_thread_alive(pid, tid)) {
            return false; /* dying: it will never stop */
        }
        nanosleep(&ts, NULL);
    }
    return false;
}

/* A seized thread that died cannot be detached: it stays a zombie traced by
 * us, which its parent cannot reap (a waiting parent would hang) until we
 * exit. Taking its exit from it as its tracer hands it on to the parent.
 * Not the main thread of our own child: that wait would be the parent's,
 * and take the exit status with it. */
static void live_release_dead(pid_t pid, pid_t tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    live_stat st;
    if (tid == pid && (!live_read_stat(path, &st) || st.ppid == (int)getpid())) {
        return;
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    waitid(P_PID, (id_t)tid, &si, WEXITED | WNOHANG | __WALL);
}

static void live_thaw(mem *m) {
    mem_live *l = (mem_live *)m;
    if (!l->frozen) {
        return;
    }
    int n = live_nseized;
    for (int i = 0; i < n && i < LIVE_FREEZE_MAX; i++) {
        pid_t tid = live_seized[i];
        if (tid > 0 && ptrace(PTRACE_DETACH, tid, NULL, NULL) != 0 && errno == ESRCH) {
            live_release_dead(m->pid, tid);
        }
    }
    live_nseized = 0;
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
    live_hook(m->pid, "freeze");
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
            live_hook(m->pid, "seize");
            if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) != 0) {
                int en = errno;
                if (en == ESRCH || (en == EPERM && !live_thread_alive(m->pid, tid))) {
                    continue; /* the thread exited meanwhile (a zombie refuses EPERM) */
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
                live_hook(m->pid, "interrupt");
                live_wait_stop(m->pid, tid);
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
    .exited = live_exited,
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
    uint64_t start = mem_proc_start(pid);
    if (mem_proc_exited(pid, start)) {
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        live_stat ls;
        bool zombie = live_read_stat(path, &ls) && ls.state == 'Z';
        err_set(err, ERR_GONE, "process %d has already exited", pid);
        err->hint =
            zombie ? "it is a zombie: its parent has not collected its exit status yet" : "";
        return NULL;
    }
    live_hook(pid, "open");
    mem_live *l = (mem_live *)mem_new(err, &live_ops, sizeof *l);
    if (!l) {
        return NULL;
    }
    mem *m = &l->base;
    m->pid = pid;
    m->start = start;
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
    live_hook(pid, "maps");
    if (e == ERR_OK) {
        e = live_list_tids(m);
    }
    if (e == ERR_OK) {
        /* Probe one read: permission problems show here, not at ptrace. */
        uint8_t probe[8];
        const mem_map *first = m->maps.len ? VEC_AT(&m->maps, mem_map, 0) : NULL;
        if (first && live_read(m, first->start, sizeof probe, probe) != ERR_OK) {
            e = err_set(err, ERR_PERM, "cannot read the memory of process %d: %s", pid,
                        strerror(l->mem_fd < 0 ? open_errno : l->read_errno));
        }
    }
    /* Whatever failed, a process that died meanwhile is the reason. */
    if (e != ERR_OK && e != ERR_NOMEM && live_exited(m)) {
        e = err_set(err, ERR_GONE, "process %d exited while it was being read", pid);
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
