/* `snarl watch --core-dir`: writes an ELF core of a live process, as the
 * kernel would, without gdb. Every thread is frozen (ptrace seize and
 * interrupt) while the core is written, so threads and memory agree. The
 * core holds what a later `snarl check CORE` (or gdb) needs: one NT_PRSTATUS
 * and NT_PRFPREG per thread, NT_PRPSINFO, NT_AUXV, NT_FILE, and the memory a
 * file on disk cannot give back (anonymous and written pages, and the first
 * page of each mapped file for its build-id); read-only file pages are left
 * to the files, as the kernel's default coredump_filter does. Not gcore:
 * gdb is seldom on CI images, takes seconds to start on a big process, and
 * would be one more tracer to take turns with; the tests check that snarl
 * and gdb both read these cores. */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/procfs.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Threads frozen and recorded; far above any Python program's. */
#define CLI_DUMP_THREADS_MAX 4096
/* Rounds of re-listing /proc/PID/task while threads keep appearing. */
#define CLI_DUMP_FREEZE_ROUNDS 8
/* How long one thread may take to reach its ptrace stop (one in
 * uninterruptible sleep may never stop: it is then recorded without
 * registers). */
#define CLI_DUMP_STOP_WAIT_MS 2000
/* Mappings recorded: ELF's program header count is 16 bits (PN_XNUM is
 * 0xffff) and one entry is the note; the kernel's default vm.max_map_count
 * (65530) stays below. */
#define CLI_DUMP_MAPS_MAX 65533
/* Memory copied at a time. */
#define CLI_DUMP_CHUNK (1u << 20)
/* Pages: the unit of holes (all-zero pages are not written) and of
 * segment alignment in the file. */
#define CLI_DUMP_PAGE 4096u
/* Bytes of /proc/PID/auxv and of one smaps line we keep. */
#define CLI_DUMP_AUXV_MAX 4096
#define CLI_DUMP_LINE_MAX 8192

typedef struct dump_map {
    uint64_t start, end, offset;
    char perms[5];
    bool anon_pages; /* smaps: some pages were written (copy-on-write) */
    char *path;      /* NULL when anonymous */
} dump_map;

typedef struct dump_thread {
    pid_t tid;
    bool stopped;
    struct user_regs_struct regs;
    struct user_fpregs_struct fpregs;
} dump_thread;

typedef struct dump {
    pid_t pid;
    char *msg;
    size_t cap;
    dump_map *maps;
    size_t nmaps;
    dump_thread *threads;
    size_t nthreads;
    uint8_t auxv[CLI_DUMP_AUXV_MAX];
    size_t auxv_len;
    int mem_fd;
    int out_fd;
} dump;

__attribute__((format(printf, 2, 3))) static int cli_dump_fail(dump *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, d->cap, fmt, ap);
    va_end(ap);
    return -1;
}

static bool cli_dump_is_file(const char *path) {
    static const char *const not_files[] = {"/dev/", "/memfd:", "/SYSV", "/anon_hugepage"};
    if (!path || path[0] != '/') {
        return false;
    }
    for (size_t i = 0; i < sizeof not_files / sizeof *not_files; i++) {
        if (strncmp(path, not_files[i], strlen(not_files[i])) == 0) {
            return false;
        }
    }
    return true;
}

/* /proc/PID/smaps: the mappings, and for each whether any page was written
 * (its "Anonymous:" pages), which decides whether a file mapping's memory
 * still equals the file. /proc/PID/maps, without that, if smaps is closed. */
static int cli_dump_read_maps(dump *d) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/smaps", (int)d->pid);
    FILE *f = fopen(path, "re");
    bool smaps = f != NULL;
    if (!f) {
        snprintf(path, sizeof path, "/proc/%d/maps", (int)d->pid);
        f = fopen(path, "re");
    }
    if (!f) {
        return cli_dump_fail(d, "cannot read %s: %s", path, strerror(errno));
    }
    char *line = malloc(CLI_DUMP_LINE_MAX);
    size_t cap = 0;
    int rc = 0;
    while (line && fgets(line, CLI_DUMP_LINE_MAX, f)) {
        unsigned long long start, end, off, anon;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "Anonymous: %llu", &anon) == 1) {
            if (d->nmaps > 0 && anon > 0) {
                d->maps[d->nmaps - 1].anon_pages = true;
            }
            continue;
        }
        if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %n", &start, &end, perms, &off, &name_at) <
                4 ||
            name_at == 0) {
            continue;
        }
        if (d->nmaps == CLI_DUMP_MAPS_MAX) {
            rc = cli_dump_fail(d, "process %d has more than %d mappings", (int)d->pid,
                               CLI_DUMP_MAPS_MAX);
            break;
        }
        if (d->nmaps == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            dump_map *n = realloc(d->maps, ncap * sizeof *n);
            if (!n) {
                rc = cli_dump_fail(d, "out of memory");
                break;
            }
            d->maps = n;
            cap = ncap;
        }
        dump_map *m = &d->maps[d->nmaps++];
        memset(m, 0, sizeof *m);
        m->start = start;
        m->end = end;
        m->offset = off;
        snprintf(m->perms, sizeof m->perms, "%.4s", perms);
        /* Without smaps nothing says a file mapping was written: keep the
         * writable ones (.data, .bss), whose pages usually are. */
        m->anon_pages = !smaps && perms[1] == 'w';
        char *name = line + name_at;
        name[strcspn(name, "\n")] = '\0';
        if (name[0] && !(m->path = strdup(name))) {
            rc = cli_dump_fail(d, "out of memory");
            break;
        }
    }
    if (!line) {
        rc = cli_dump_fail(d, "out of memory");
    }
    free(line);
    fclose(f);
    return rc;
}

/* Takes the interrupt stop only, never an exit: the exit status of a
 * process that dies meanwhile stays for its parent (snarl watch itself,
 * when it is the command). */
static bool cli_dump_wait_stop(pid_t tid) {
    struct timespec ms = {0, 1000000};
    for (int waited = 0; waited < CLI_DUMP_STOP_WAIT_MS; waited++) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)tid, &si, WEXITED | WSTOPPED | WNOHANG | WNOWAIT | __WALL) != 0) {
            return false;
        }
        if (si.si_pid == tid) {
            if (si.si_code != CLD_TRAPPED && si.si_code != CLD_STOPPED) {
                return false;
            }
            memset(&si, 0, sizeof si);
            return waitid(P_PID, (id_t)tid, &si, WSTOPPED | WNOHANG | __WALL) == 0 &&
                   si.si_pid == tid;
        }
        nanosleep(&ms, NULL);
    }
    return false;
}

static bool cli_dump_seized(const dump *d, pid_t tid) {
    for (size_t i = 0; i < d->nthreads; i++) {
        if (d->threads[i].tid == tid) {
            return true;
        }
    }
    return false;
}

static void cli_dump_thaw(dump *d) {
    for (size_t i = 0; i < d->nthreads; i++) {
        ptrace(PTRACE_DETACH, d->threads[i].tid, NULL, NULL);
    }
}

/* Seizes every thread (the main thread first: debuggers take the first
 * NT_PRSTATUS for the process) and takes its registers. */
static int cli_dump_freeze(dump *d) {
    d->threads = calloc(CLI_DUMP_THREADS_MAX, sizeof *d->threads);
    if (!d->threads) {
        return cli_dump_fail(d, "out of memory");
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)d->pid);
    for (int round = 0; round < CLI_DUMP_FREEZE_ROUNDS; round++) {
        DIR *dir = opendir(path);
        if (!dir) {
            return cli_dump_fail(d, "process %d is gone", (int)d->pid);
        }
        bool added = false;
        struct dirent *de;
        pid_t tids[CLI_DUMP_THREADS_MAX];
        size_t n = 0;
        tids[n++] = d->pid;
        while ((de = readdir(dir)) != NULL && n < CLI_DUMP_THREADS_MAX) {
            long tid = strtol(de->d_name, NULL, 10);
            if (tid > 0 && tid != d->pid) {
                tids[n++] = (pid_t)tid;
            }
        }
        closedir(dir);
        for (size_t i = 0; i < n && d->nthreads < CLI_DUMP_THREADS_MAX; i++) {
            if (cli_dump_seized(d, tids[i])) {
                continue;
            }
            if (ptrace(PTRACE_SEIZE, tids[i], NULL, NULL) != 0) {
                if (errno == ESRCH || snarl_pid_exited((int)d->pid)) {
                    continue; /* the thread ended meanwhile; a dying one refuses EPERM */
                }
                return cli_dump_fail(d, "cannot freeze thread %d of process %d: %s", (int)tids[i],
                                     (int)d->pid, strerror(errno));
            }
            dump_thread *t = &d->threads[d->nthreads++];
            t->tid = tids[i];
            added = true;
            if (ptrace(PTRACE_INTERRUPT, t->tid, NULL, NULL) == 0 && cli_dump_wait_stop(t->tid)) {
                t->stopped = ptrace(PTRACE_GETREGS, t->tid, NULL, &t->regs) == 0;
                ptrace(PTRACE_GETFPREGS, t->tid, NULL, &t->fpregs);
            }
        }
        if (!added) {
            break;
        }
    }
    return d->nthreads ? 0 : cli_dump_fail(d, "process %d has no threads left", (int)d->pid);
}

/* What of a mapping goes into the core, as the kernel's default filter:
 * anonymous memory and written file pages whole, a file's first page (its
 * ELF header, for the build-id), nothing of unreadable or special areas. */
static uint64_t cli_dump_content(const dump_map *m) {
    if (m->perms[0] != 'r' ||
        (m->path && (strcmp(m->path, "[vvar]") == 0 || strcmp(m->path, "[vvar_vclock]") == 0 ||
                     strcmp(m->path, "[vsyscall]") == 0))) {
        return 0;
    }
    if (!cli_dump_is_file(m->path) || m->anon_pages) {
        return m->end - m->start;
    }
    if (m->perms[3] == 's') {
        return 0; /* a shared file: the file itself is the content */
    }
    return m->offset == 0 ? CLI_DUMP_PAGE : 0;
}

static size_t cli_dump_note_size(size_t desc) {
    return 12 + 8 /* "CORE\0" padded */ + ((desc + 3) & ~(size_t)3);
}

static void cli_dump_note(uint8_t **p, uint32_t type, const void *desc, size_t len) {
    Elf64_Nhdr h = {.n_namesz = 5, .n_descsz = (Elf64_Word)len, .n_type = type};
    memcpy(*p, &h, sizeof h);
    memcpy(*p + 12, "CORE\0\0\0\0", 8);
    memcpy(*p + 20, desc, len);
    *p += cli_dump_note_size(len);
}

static void cli_dump_psinfo(const dump *d, struct elf_prpsinfo *ps) {
    memset(ps, 0, sizeof *ps);
    ps->pr_pid = d->pid;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)d->pid);
    FILE *f = fopen(path, "re");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        if (open && close && close > open) {
            snprintf(ps->pr_fname, sizeof ps->pr_fname, "%.*s", (int)(close - open - 1), open + 1);
            char state = 0;
            int ppid = 0, pgrp = 0, sid = 0;
            sscanf(close + 1, " %c %d %d %d", &state, &ppid, &pgrp, &sid);
            ps->pr_sname = state;
            ps->pr_zomb = state == 'Z';
            ps->pr_ppid = ppid;
            ps->pr_pgrp = pgrp;
            ps->pr_sid = sid;
        }
    }
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)d->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, ps->pr_psargs, sizeof ps->pr_psargs - 1);
        close(fd);
        for (ssize_t i = 0; i + 1 < n; i++) {
            if (ps->pr_psargs[i] == '\0') {
                ps->pr_psargs[i] = ' ';
            }
        }
    }
}

/* The notes, built in memory: they are small next to the memory. */
static uint8_t *cli_dump_notes(dump *d, size_t *len) {
    size_t files = 0, names = 0;
    for (size_t i = 0; i < d->nmaps; i++) {
        if (cli_dump_is_file(d->maps[i].path)) {
            files++;
            names += strlen(d->maps[i].path) + 1;
        }
    }
    size_t file_desc = 16 + files * 24 + names;
    size_t total = d->nthreads * (cli_dump_note_size(sizeof(struct elf_prstatus)) +
                                  cli_dump_note_size(sizeof(struct user_fpregs_struct))) +
                   cli_dump_note_size(sizeof(struct elf_prpsinfo)) +
                   cli_dump_note_size(d->auxv_len) + cli_dump_note_size(file_desc);
    uint8_t *buf = calloc(1, total), *p = buf;
    uint8_t *fd_buf = calloc(1, file_desc);
    if (!buf || !fd_buf) {
        free(buf);
        free(fd_buf);
        return NULL;
    }
    struct elf_prpsinfo ps;
    cli_dump_psinfo(d, &ps);
    /* Per thread as the kernel orders them: its status, then its FP state. */
    for (size_t i = 0; i < d->nthreads; i++) {
        struct elf_prstatus st;
        memset(&st, 0, sizeof st);
        st.pr_pid = d->threads[i].tid;
        st.pr_ppid = ps.pr_ppid;
        st.pr_pgrp = ps.pr_pgrp;
        st.pr_sid = ps.pr_sid;
        memcpy(&st.pr_reg, &d->threads[i].regs, sizeof st.pr_reg);
        st.pr_fpvalid = d->threads[i].stopped;
        cli_dump_note(&p, NT_PRSTATUS, &st, sizeof st);
        cli_dump_note(&p, NT_PRFPREG, &d->threads[i].fpregs, sizeof d->threads[i].fpregs);
    }
    cli_dump_note(&p, NT_PRPSINFO, &ps, sizeof ps);
    cli_dump_note(&p, NT_AUXV, d->auxv, d->auxv_len);
    uint64_t head[2] = {files, CLI_DUMP_PAGE};
    memcpy(fd_buf, head, sizeof head);
    size_t k = 0, at = 16 + files * 24;
    for (size_t i = 0; i < d->nmaps; i++) {
        const dump_map *m = &d->maps[i];
        if (!cli_dump_is_file(m->path)) {
            continue;
        }
        uint64_t e[3] = {m->start, m->end, m->offset / CLI_DUMP_PAGE};
        memcpy(fd_buf + 16 + k++ * 24, e, sizeof e);
        size_t n = strlen(m->path) + 1;
        memcpy(fd_buf + at, m->path, n);
        at += n;
    }
    cli_dump_note(&p, NT_FILE, fd_buf, file_desc);
    free(fd_buf);
    *len = total;
    return buf;
}

static bool cli_dump_pwrite(int fd, const uint8_t *p, size_t n, uint64_t off) {
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return true;
}

static bool cli_dump_zero(const uint8_t *p, size_t n) {
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Copies [addr, addr+len) of the target to the core at off: pages that
 * cannot be read (guard pages inside a mapping) and all-zero pages stay
 * holes, read back as zeros. */
static int cli_dump_copy(dump *d, uint8_t *buf, uint64_t addr, uint64_t len, uint64_t off) {
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < CLI_DUMP_CHUNK ? (size_t)(len - done) : CLI_DUMP_CHUNK;
        ssize_t r = pread(d->mem_fd, buf, n, (off_t)(addr + done));
        if (r != (ssize_t)n) {
            /* Page by page: keep what can be read. */
            for (size_t k = 0; k < n; k += CLI_DUMP_PAGE) {
                size_t pn = n - k < CLI_DUMP_PAGE ? n - k : CLI_DUMP_PAGE;
                if (pread(d->mem_fd, buf + k, pn, (off_t)(addr + done + k)) != (ssize_t)pn) {
                    memset(buf + k, 0, pn);
                }
            }
        }
        for (size_t k = 0; k < n; k += CLI_DUMP_PAGE) {
            size_t pn = n - k < CLI_DUMP_PAGE ? n - k : CLI_DUMP_PAGE;
            if (!cli_dump_zero(buf + k, pn) &&
                !cli_dump_pwrite(d->out_fd, buf + k, pn, off + done + k)) {
                return cli_dump_fail(d, "cannot write the core: %s", strerror(errno));
            }
        }
        done += n;
    }
    return 0;
}

static int cli_dump_write(dump *d) {
    size_t notes_len = 0;
    uint8_t *notes = cli_dump_notes(d, &notes_len);
    uint8_t *buf = malloc(CLI_DUMP_CHUNK);
    Elf64_Phdr *ph = calloc(d->nmaps + 1, sizeof *ph);
    int rc = 0;
    if (!notes || !buf || !ph) {
        rc = cli_dump_fail(d, "out of memory");
        goto out;
    }
    size_t phnum = d->nmaps + 1;
    uint64_t off = sizeof(Elf64_Ehdr) + phnum * sizeof(Elf64_Phdr);
    ph[0] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = off, .p_filesz = notes_len, .p_align = 4};
    off = (off + notes_len + CLI_DUMP_PAGE - 1) & ~(uint64_t)(CLI_DUMP_PAGE - 1);
    for (size_t i = 0; i < d->nmaps; i++) {
        const dump_map *m = &d->maps[i];
        uint64_t content = cli_dump_content(m);
        ph[i + 1] = (Elf64_Phdr){
            .p_type = PT_LOAD,
            .p_flags = (m->perms[0] == 'r' ? PF_R : 0) | (m->perms[1] == 'w' ? PF_W : 0) |
                       (m->perms[2] == 'x' ? PF_X : 0),
            .p_offset = off,
            .p_vaddr = m->start,
            .p_filesz = content,
            .p_memsz = m->end - m->start,
            .p_align = CLI_DUMP_PAGE,
        };
        off += content;
    }
    Elf64_Ehdr eh = {
        .e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT,
                    ELFOSABI_NONE},
        .e_type = ET_CORE,
        .e_machine = EM_X86_64,
        .e_version = EV_CURRENT,
        .e_phoff = sizeof(Elf64_Ehdr),
        .e_ehsize = sizeof(Elf64_Ehdr),
        .e_phentsize = sizeof(Elf64_Phdr),
        .e_phnum = (Elf64_Half)phnum,
    };
    if (!cli_dump_pwrite(d->out_fd, (const uint8_t *)&eh, sizeof eh, 0) ||
        !cli_dump_pwrite(d->out_fd, (const uint8_t *)ph, phnum * sizeof *ph, sizeof eh) ||
        !cli_dump_pwrite(d->out_fd, notes, notes_len, ph[0].p_offset)) {
        rc = cli_dump_fail(d, "cannot write the core: %s", strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < d->nmaps && rc == 0; i++) {
        rc = cli_dump_copy(d, buf, ph[i + 1].p_vaddr, ph[i + 1].p_filesz, ph[i + 1].p_offset);
    }
    /* Trailing holes: the size covers them. */
    if (rc == 0 && ftruncate(d->out_fd, (off_t)off) != 0) {
        rc = cli_dump_fail(d, "cannot write the core: %s", strerror(errno));
    }
out:
    free(notes);
    free(buf);
    free(ph);
    return rc;
}

int cli_dump_core(pid_t pid, const char *path, char *msg, size_t cap) {
    dump d = {.pid = pid, .msg = msg, .cap = cap, .mem_fd = -1, .out_fd = -1};
    char tmp[4096], proc[64];
    if (snprintf(tmp, sizeof tmp, "%s.part", path) >= (int)sizeof tmp) {
        return cli_dump_fail(&d, "%s: path too long", path);
    }
    int rc = cli_dump_freeze(&d);
    if (rc == 0) {
        rc = cli_dump_read_maps(&d);
    }
    if (rc == 0) {
        snprintf(proc, sizeof proc, "/proc/%d/auxv", (int)pid);
        int fd = open(proc, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, d.auxv, sizeof d.auxv) : -1;
        d.auxv_len = n > 0 ? (size_t)n : 0;
        if (fd >= 0) {
            close(fd);
        }
        snprintf(proc, sizeof proc, "/proc/%d/mem", (int)pid);
        d.mem_fd = open(proc, O_RDONLY | O_CLOEXEC);
        if (d.mem_fd < 0) {
            rc = cli_dump_fail(&d, "cannot read the memory of process %d: %s", (int)pid,
                               strerror(errno));
        }
    }
    /* Written aside and renamed when whole: a core cut short by a full disk
     * or a kill is never taken for a complete one. A core holds the
     * process's secrets: only its owner may read it. */
    if (rc == 0 && (d.out_fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
        rc = cli_dump_fail(&d, "cannot create %s: %s", tmp, strerror(errno));
    }
    if (rc == 0) {
        rc = cli_dump_write(&d);
    }
    cli_dump_thaw(&d);
    if (d.out_fd >= 0) {
        if (close(d.out_fd) != 0 && rc == 0) {
            rc = cli_dump_fail(&d, "cannot write the core: %s", strerror(errno));
        }
        if (rc == 0 && rename(tmp, path) != 0) {
            rc = cli_dump_fail(&d, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        }
        if (rc != 0) {
            unlink(tmp);
        }
    }
    if (d.mem_fd >= 0) {
        close(d.mem_fd);
    }
    /* Whatever failed, a process that died meanwhile is the reason. */
    if (rc != 0 && snarl_pid_exited((int)pid)) {
        cli_dump_fail(&d, "process %d exited while its core was being written", (int)pid);
    }
    for (size_t i = 0; i < d.nmaps; i++) {
        free(d.maps[i].path);
    }
    free(d.maps);
    free(d.threads);
    return rc;
}
