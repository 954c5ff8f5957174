/* `snarl check --all`: every Python process of this PID namespace (what
 * /proc shows), a line each, then the full report of each one with a
 * finding. Each process is read by a worker process of its own, a few at a
 * time: a target is frozen only while its own worker reads it, a worker
 * that crashes or hangs costs one line of the table, and the engine needs
 * no thread safety. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Processes read at once: reading is mostly waiting on the kernel's page
 * copies, so a few more workers than cores still pay; more would freeze
 * more targets at the same moment for nothing. */
#define ALL_JOBS_MAX 8
/* Python processes listed: a big host runs a few hundred. */
#define ALL_PROCS_MAX 4096
/* Entries of /proc looked at: every PID of a busy host. */
#define ALL_SCAN_MAX 1000000
/* A worker still reading after this long is stopped (its SIGTERM handler
 * resumes the target) and its process reported as not read: one process
 * in uninterruptible sleep must not hang the whole listing. */
#define ALL_WORKER_SECONDS 120.0
/* How often the parent looks for finished workers. */
#define ALL_POLL_NS 5000000L
/* After SIGTERM, how long a worker gets before SIGKILL. */
#define ALL_TERM_GRACE 2.0
/* Widest verdict column of the table; longer verdicts push the command. */
#define ALL_VERDICT_WIDTH 28

/* What a worker hands back, in memory shared with the parent. */
typedef struct all_slot {
    int status; /* SNARL_STATUS_* */
    bool done;  /* the worker filled the slot */
    char error_name[32];
    char error[512];
    char hint[512];
    snarl_summary sum;
} all_slot;

typedef struct all_proc {
    pid_t pid;
    char cmdline[CLI_CMDLINE_MAX];
    size_t cmdline_len;
    bool unreadable; /* /proc would not show its executable: another user's */
    int status;
    char *report; /* the engine's document (check's text or JSON) */
    size_t report_len;
    char why[300]; /* the short verdict of the table: up to every kind found */
} all_proc;

typedef struct all_job {
    pid_t worker; /* 0: free */
    size_t index; /* into the process list */
    FILE *out;    /* the worker's report */
    double started;
    bool termed;
} all_job;

static double all_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool all_is_pid(const char *s) {
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
    }
    return true;
}

/* A zombie or a dying process has no memory to read. */
static bool all_is_alive(pid_t pid) {
    char state = 0;
    pid_t ppid;
    return cli_read_stat(pid, &state, &ppid) && state != 'Z' && state != 'X';
}

/* The Python processes of /proc, in PID order. */
static size_t all_list(all_proc **out, bool *listed) {
    *out = NULL;
    DIR *d = opendir("/proc");
    *listed = d != NULL;
    if (!d) {
        return 0;
    }
    all_proc *ps = calloc(ALL_PROCS_MAX, sizeof *ps);
    size_t n = 0;
    pid_t self = getpid();
    struct dirent *e;
    for (size_t k = 0; ps && n < ALL_PROCS_MAX && k < ALL_SCAN_MAX && (e = readdir(d)); k++) {
        if (!all_is_pid(e->d_name)) {
            continue;
        }
        pid_t pid = (pid_t)atoi(e->d_name);
        bool unreadable = false;
        if (pid == self || !all_is_alive(pid) || !cli_is_python(pid, &unreadable)) {
            continue;
        }
        all_proc *p = &ps[n++];
        p->pid = pid;
        p->unreadable = unreadable;
        p->cmdline_len = cli_read_cmdline(pid, p->cmdline, sizeof p->cmdline);
    }
    closedir(d);
    if (!ps) {
        *listed = false;
        return 0;
    }
    /* readdir's order is the kernel's; a table reads best by PID. */
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0 && ps[j - 1].pid > ps[j].pid; j--) {
            all_proc t = ps[j];
            ps[j] = ps[j - 1];
            ps[j - 1] = t;
        }
    }
    *out = ps;
    return n;
}

/* In the worker: reads one process, fills its slot, writes the report. */
static void all_work(const snarl_options *opt, const snarl_request *req, pid_t pid, FILE *out,
                     all_slot *slot) {
    slot->status = SNARL_STATUS_ERROR;
    snarl_session *s = snarl_open(opt);
    if (!s) {
        snprintf(slot->error, sizeof slot->error, "out of memory");
        snprintf(slot->error_name, sizeof slot->error_name, "NOMEM");
        slot->done = true;
        return;
    }
    if (snarl_attach_pid(s, (int)pid) == 0) {
        slot->status = snarl_run(s, req, cli_sink, out);
    }
    if (fflush(out) != 0 && slot->status != SNARL_STATUS_ERROR) {
        slot->status = SNARL_STATUS_ERROR;
        snprintf(slot->error, sizeof slot->error, "cannot write the report: %s", strerror(errno));
    } else if (slot->status == SNARL_STATUS_ERROR) {
        snprintf(slot->error, sizeof slot->error, "%s", snarl_error(s));
        snprintf(slot->hint, sizeof slot->hint, "%s", snarl_hint(s));
        snprintf(slot->error_name, sizeof slot->error_name, "%s", snarl_error_name(s));
    }
    snarl_last_summary(s, &slot->sum);
    snarl_close(s);
    slot->done = true;
}

static char *all_slurp(FILE *f, size_t *len) {
    *len = 0;
    if (fseek(f, 0, SEEK_END) != 0) {
        return NULL;
    }
    long size = ftell(f);
    rewind(f);
    if (size <= 0) {
        return NULL;
    }
    char *b = malloc((size_t)size + 1);
    if (b) {
        *len = fread(b, 1, (size_t)size, f);
        b[*len] = '\0';
    }
    return b;
}

/* The table's short word for a process that was not read. */
static const char *all_short_error(const all_slot *slot) {
    static const struct {
        const char *name, *why;
    } words[] = {
        {"PERM", "not read: permission denied"},
        {"NOT_PYTHON", "not CPython"},
        {"UNSUPPORTED", "unsupported Python version"},
        {"BUSY", "traced by another tracer"},
        {"GONE", "exited while read"},
        {"NO_PROCESS", "exited"},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strcmp(slot->error_name, words[i].name) == 0) {
            return words[i].why;
        }
    }
    return "not read";
}

/* The worker is done (or was stopped): its result moves to the list. */
static void all_finish(all_job *j, all_proc *p, const all_slot *slot, int wstatus) {
    if (slot->done) {
        p->status = slot->status;
        if (slot->status == SNARL_STATUS_ERROR) {
            snprintf(p->why, sizeof p->why, "%s", all_short_error(slot));
        } else if (slot->sum.loops == 0 && slot->sum.tasks == 0) {
            snprintf(p->why, sizeof p->why, "no asyncio");
        } else if (slot->sum.findings == 0) {
            snprintf(p->why, sizeof p->why, "no problem");
        } else {
            snprintf(p->why, sizeof p->why, "%s", slot->sum.kinds);
        }
    } else {
        p->status = SNARL_STATUS_ERROR;
        if (j->termed) {
            snprintf(p->why, sizeof p->why, "not read: still reading after %.0fs",
                     ALL_WORKER_SECONDS);
        } else if (WIFSIGNALED(wstatus)) {
            snprintf(p->why, sizeof p->why, "not read: the reader died (signal %d)",
                     WTERMSIG(wstatus));
        } else {
            snprintf(p->why, sizeof p->why, "not read");
        }
    }
    p->report = all_slurp(j->out, &p->report_len);
    fclose(j->out);
    j->out = NULL;
    j->worker = 0;
}

/* Runs the workers, ALL_JOBS_MAX at a time; fills every process's result. */
static int all_read(const snarl_options *opt, const snarl_request *req, all_proc *ps, size_t n,
                    all_slot *slots) {
    all_job jobs[ALL_JOBS_MAX] = {{0}};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t width = cpus > 0 && (size_t)cpus * 2 < ALL_JOBS_MAX ? (size_t)cpus * 2 : ALL_JOBS_MAX;
    size_t next = 0, running = 0;
    fflush(stdout);
    fflush(stderr);
    while (next < n || running > 0) {
        for (size_t k = 0; k < width && next < n; k++) {
            all_job *j = &jobs[k];
            if (j->worker) {
                continue;
            }
            j->out = tmpfile();
            if (!j->out) {
                return cli_fail("cannot create a temporary file for a report", NULL);
            }
            j->index = next++;
            j->started = all_now();
            j->termed = false;
            pid_t w = fork();
            if (w == 0) {
                all_work(opt, req, ps[j->index].pid, j->out, &slots[j->index]);
                _exit(0);
            }
            if (w < 0) {
                fclose(j->out);
                j->out = NULL;
                ps[j->index].status = SNARL_STATUS_ERROR;
                snprintf(ps[j->index].why, sizeof ps[j->index].why, "not read: cannot fork");
                continue;
            }
            j->worker = w;
            running++;
        }
        bool reaped = false;
        for (size_t k = 0; k < width; k++) {
            all_job *j = &jobs[k];
            if (!j->worker) {
                continue;
            }
            int st = 0;
            pid_t r = waitpid(j->worker, &st, WNOHANG);
            if (r == j->worker || (r < 0 && errno == ECHILD)) {
                all_finish(j, &ps[j->index], &slots[j->index], st);
                running--;
                reaped = true;
                continue;
            }
            double age = all_now() - j->started;
            if (!j->termed && age > ALL_WORKER_SECONDS) {
                kill(j->worker, SIGTERM);
                j->termed = true;
            } else if (j->termed && age > ALL_WORKER_SECONDS + ALL_TERM_GRACE) {
                kill(j->worker, SIGKILL);
            }
        }
        if (!reaped && running > 0) {
            struct timespec ts = {0, ALL_POLL_NS};
            nanosleep(&ts, NULL);
        }
    }
    return SNARL_STATUS_CLEAN;
}

static void all_render_text(FILE *f, const all_proc *ps, size_t n, const all_slot *slots) {
    if (n == 0) {
        fputs("No Python process found.\n", f);
        return;
    }
    int vw = 7;
    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(ps[i].why);
        vw = len > vw && len <= ALL_VERDICT_WIDTH ? len : vw;
    }
    fprintf(f, "%7s  %-10s %7s  %-*s  %s\n", "PID", "PYTHON", "TASKS", vw, "VERDICT", "COMMAND");
    size_t found = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        const all_proc *p = &ps[i];
        const all_slot *s = &slots[i];
        char tasks[32] = "-";
        if (p->status != SNARL_STATUS_ERROR) {
            snprintf(tasks, sizeof tasks, "%zu", s->sum.tasks);
        }
        fprintf(f, "%7d  %-10s %7s  %-*s  ", (int)p->pid, s->sum.python[0] ? s->sum.python : "-",
                tasks, vw, p->why);
        cli_text_args(f, p->cmdline, p->cmdline_len);
        fputc('\n', f);
        found += p->status == SNARL_STATUS_FOUND;
        failed += p->status == SNARL_STATUS_ERROR;
    }
    /* Why each unread one was not read, with what to try. */
    for (size_t i = 0; i < n; i++) {
        if (ps[i].status == SNARL_STATUS_ERROR && slots[i].error[0]) {
            fprintf(f, "\nprocess %d: %s\n", (int)ps[i].pid, slots[i].error);
            if (slots[i].hint[0]) {
                fprintf(f, "hint: %s\n", slots[i].hint);
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        const all_proc *p = &ps[i];
        if (p->status != SNARL_STATUS_FOUND) {
            continue;
        }
        fprintf(f, "\n== process %d (", (int)p->pid);
        cli_text_args(f, p->cmdline, p->cmdline_len);
        fputs(") ==\n", f);
        if (p->report) {
            fwrite(p->report, 1, p->report_len, f);
        }
    }
    fprintf(f, "\n%zu Python process%s: ", n, n == 1 ? "" : "es");
    if (found) {
        fprintf(f, "%zu with a problem", found);
    } else {
        fputs("no problem found", f);
    }
    if (failed) {
        fprintf(f, ", %zu not read", failed);
    }
    fputs(".\n", f);
}

static void all_render_json(FILE *f, const all_proc *ps, size_t n, const all_slot *slots,
                            int status) {
    fprintf(f, "{\"schema\":\"snarl-all/1\",\"status\":%d,\"processes\":[", status);
    for (size_t i = 0; i < n; i++) {
        const all_proc *p = &ps[i];
        const all_slot *s = &slots[i];
        bool read = p->status != SNARL_STATUS_ERROR;
        fprintf(f, "%s{\"pid\":%d,\"cmdline\":", i ? "," : "", (int)p->pid);
        cli_json_args(f, p->cmdline, p->cmdline_len);
        fputs(",\"python\":", f);
        cli_json_cstr(f, s->sum.python);
        if (read) {
            fprintf(f, ",\"tasks\":%zu,\"pending\":%zu,\"loops\":%zu", s->sum.tasks, s->sum.pending,
                    s->sum.loops);
        } else {
            fputs(",\"tasks\":null,\"pending\":null,\"loops\":null", f);
        }
        fprintf(f, ",\"status\":%d,\"verdict\":", p->status);
        cli_json_cstr(f, p->why);
        fputs(",\"error\":", f);
        cli_json_cstr(f, read ? NULL : s->error[0] ? s->error : p->why);
        fputs(",\"hint\":", f);
        cli_json_cstr(f, read ? NULL : s->hint);
        fputs(",\"report\":", f);
        cli_json_embed(f, read ? p->report : NULL, read ? p->report_len : 0);
        fputc('}', f);
    }
    fputs("]}\n", f);
}

int cli_all_main(const snarl_options *opt, const snarl_request *req) {
    all_proc *ps = NULL;
    bool listed = false;
    size_t n = all_list(&ps, &listed);
    if (!listed) {
        return cli_fail("cannot list the processes in /proc", "check --all needs /proc mounted");
    }
    all_slot *slots = NULL;
    if (n > 0) {
        slots = mmap(NULL, n * sizeof *slots, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                     -1, 0);
        if (slots == MAP_FAILED) {
            free(ps);
            return cli_fail("out of memory", NULL);
        }
    }
    /* Each worker's report is check's own document, in the chosen format. */
    snarl_request one = *req;
    one.command = "check";
    one.all = 0;
    int status = n > 0 ? all_read(opt, &one, ps, n, slots) : SNARL_STATUS_CLEAN;
    if (status == SNARL_STATUS_CLEAN) {
        for (size_t i = 0; i < n; i++) {
            status = ps[i].status == SNARL_STATUS_FOUND ? SNARL_STATUS_FOUND : status;
        }
        if (req->format == SNARL_FORMAT_JSON) {
            all_render_json(stdout, ps, n, slots, status);
        } else {
            all_render_text(stdout, ps, n, slots);
        }
        if (fflush(stdout) != 0) {
            status = cli_fail("cannot write the output", NULL);
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(ps[i].report);
    }
    if (slots) {
        munmap(slots, n * sizeof *slots);
    }
    free(ps);
    return status;
}
