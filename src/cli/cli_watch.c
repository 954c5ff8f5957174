/* `snarl watch [OPTIONS] -- CMD ARGS...`: runs CMD in a process group of its
 * own with stdin, stdout and stderr passed through. If CMD is still running
 * at the deadline (or when snarl gets SIGUSR1), finds the Python processes of
 * its process tree, reads each live through the engine (frozen while read),
 * writes the report to stderr or --output, optionally a core of each to
 * --core-dir, and at the deadline stops the whole tree (--signal, then
 * SIGKILL after --kill-after). Exit status: CMD's own when it finishes in
 * time (a signal N as 128+N, as shells say it); after the deadline 1 when
 * something was found, 124 (as timeout(1)) when nothing was, 2 when a
 * Python process could not be analysed. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* The exit status of a command that hung and showed nothing wrong: what
 * timeout(1) returns, so CI scripts that know it keep working. */
#define WATCH_STATUS_TIMEOUT 124
/* Shells report a death by signal N as 128 + N. */
#define WATCH_SIGNAL_BASE 128
/* exec failures, as shells report them. */
#define WATCH_STATUS_NOT_FOUND 127
#define WATCH_STATUS_NOT_EXECUTABLE 126
/* Between the stop signal and SIGKILL: time for atexit handlers and a test
 * runner's summary, short enough not to eat a CI job's budget. */
#define WATCH_DEFAULT_KILL_AFTER 5.0
/* After SIGKILL the tree is gone within milliseconds unless a process sits
 * in uninterruptible sleep; we stop waiting for it after this long. */
#define WATCH_REAP_WAIT 10.0
/* How often the stop phase looks whether the tree is gone. */
#define WATCH_POLL_NS 20000000L
/* Processes in /proc we look at, and Python processes of the tree we read:
 * a CI job has dozens, a machine a few thousand. */
#define WATCH_SCAN_MAX 1000000
#define WATCH_PYTHONS_MAX 1024
/* Longest path we build (a core's name under --core-dir). */
#define WATCH_PATH_MAX 4096

static const char watch_usage[] =
    "usage: snarl watch [OPTIONS] [--] CMD ARGS...\n"
    "\n"
    "Runs CMD with stdin, stdout and stderr passed through. If it does not finish within\n"
    "--timeout, or when snarl gets SIGUSR1, reads every Python process of its process tree\n"
    "(frozen while read) and reports what is stuck: a deadlock, a cycle, a blocked loop...\n"
    "At the deadline it then stops the command and its whole tree; SIGUSR1 only reports.\n"
    "\n"
    "options:\n"
    "  --timeout DURATION     deadline: seconds, or with a suffix s, m, h or d (default: none)\n"
    "  --output FILE          write the report there instead of stderr (created empty first)\n"
    "  --format text|json     the report's format (json: one snarl-watch/1 document a line)\n"
    "  --core-dir DIR         also write a core of each Python process, DIR/core.PID\n"
    "  --signal SIG           how to stop the command at the deadline (default TERM)\n"
    "  --kill-after DURATION  then SIGKILL what is left after this long (default 5s)\n"
    "  --fail-on KIND,...     only these diagnosis kinds count as found (see 'snarl --help')\n"
    "  --no-freeze            read the processes without stopping them\n"
    "  -h, --help             this help\n"
    "\n"
    "The command sees SNARL_WATCH_PID, snarl's PID: `kill -USR1 $SNARL_WATCH_PID` asks for a\n"
    "report now. SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to snarl are passed to the command.\n"
    "\n"
    "exit status: the command's own when it finishes in time (killed by signal N: 128+N);\n"
    "at the deadline 1 a problem was found, 124 nothing was found, 2 could not analyse;\n"
    "125 snarl watch itself failed (usage), 126/127 CMD could not be run or found\n";

/* Exit status of a usage error, before the command ran: as timeout(1),
 * distinct from every status the command or the analysis can give. */
#define WATCH_STATUS_USAGE 125

typedef struct watch_opts {
    double timeout;    /* seconds; 0: none */
    double kill_after; /* seconds between the stop signal and SIGKILL */
    int stop_signal;
    bool json;
    bool no_freeze;
    const char *output;
    const char *core_dir;
    const char *fail_on;
    char **cmd;
} watch_opts;

typedef struct watch_proc {
    pid_t pid, ppid;
    char state;
} watch_proc;

typedef struct watch_state {
    watch_opts o;
    pid_t child;
    int out_fd; /* --output, or -1 for stderr */
    bool tty_given;
    int tty_fd;
    double started;
    sigset_t handled; /* the signals we take with sigtimedwait */
    sigset_t old_mask;
    struct sigaction old_pipe;
    bool child_done;
    int child_status; /* raw wait status once child_done */
} watch_state;

/* One analysed process of a report. */
typedef struct watch_result {
    pid_t pid, ppid;
    char cmdline[CLI_CMDLINE_MAX]; /* arguments separated by NULs */
    size_t cmdline_len;
    int status;  /* SNARL_STATUS_* */
    bool exited; /* the engine found it exited while it was read */
    char *report;
    size_t report_len;
    char error[512];
    char hint[512];
    char core[WATCH_PATH_MAX];
} watch_result;

static double watch_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int watch_usage_error(const char *msg) {
    char clean[2048];
    snarl_escape(clean, sizeof clean, msg, strlen(msg));
    fprintf(stderr, "snarl watch: %s\nhint: see 'snarl watch --help'\n", clean);
    return WATCH_STATUS_USAGE;
}

/* "30", "1.5", "10m", "2h", "1d". */
static bool watch_parse_duration(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno != 0 || !(v < 1e12) || v < 0) {
        return false;
    }
    double unit = 1;
    if (*end == 's') {
        end++;
    } else if (*end == 'm') {
        unit = 60, end++;
    } else if (*end == 'h') {
        unit = 3600, end++;
    } else if (*end == 'd') {
        unit = 86400, end++;
    }
    *out = v * unit;
    return *end == '\0';
}

static const struct {
    const char *name;
    int sig;
} watch_signals[] = {
    {"TERM", SIGTERM}, {"INT", SIGINT},   {"HUP", SIGHUP},   {"QUIT", SIGQUIT},
    {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"ABRT", SIGABRT},
};

static bool watch_parse_signal(const char *s, int *sig) {
    if (strncmp(s, "SIG", 3) == 0) {
        s += 3;
    }
    for (size_t i = 0; i < sizeof watch_signals / sizeof *watch_signals; i++) {
        if (strcasecmp(s, watch_signals[i].name) == 0) {
            *sig = watch_signals[i].sig;
            return true;
        }
    }
    char *end;
    long v = strtol(s, &end, 10);
    if (*s && !*end && v > 0 && v < NSIG) {
        *sig = (int)v;
        return true;
    }
    return false;
}

static const char *watch_signal_name(int sig) {
    for (size_t i = 0; i < sizeof watch_signals / sizeof *watch_signals; i++) {
        if (watch_signals[i].sig == sig) {
            return watch_signals[i].name;
        }
    }
    return "?";
}

/* --name VALUE or --name=VALUE; NULL when a is another option. */
static const char *watch_value(int argc, char **argv, int *i, const char *name, bool *missing) {
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0) {
        return NULL;
    }
    if (a[n] == '=') {
        return a + n + 1;
    }
    if (a[n] != '\0') {
        return NULL;
    }
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

static int watch_parse(int argc, char **argv, watch_opts *o, bool *help) {
    o->kill_after = WATCH_DEFAULT_KILL_AFTER;
    o->stop_signal = SIGTERM;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i], *v;
        bool missing = false;
        char msg[512];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            break; /* the command */
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            *help = true;
            return 0;
        } else if ((v = watch_value(argc, argv, &i, "--timeout", &missing))) {
            if (!watch_parse_duration(v, &o->timeout)) {
                snprintf(msg, sizeof msg, "--timeout takes a duration (30, 1.5, 10m, 2h): '%s'", v);
                return watch_usage_error(msg);
            }
        } else if ((v = watch_value(argc, argv, &i, "--kill-after", &missing))) {
            if (!watch_parse_duration(v, &o->kill_after)) {
                snprintf(msg, sizeof msg, "--kill-after takes a duration (5, 0.5, 1m): '%s'", v);
                return watch_usage_error(msg);
            }
        } else if ((v = watch_value(argc, argv, &i, "--signal", &missing))) {
            if (!watch_parse_signal(v, &o->stop_signal)) {
                snprintf(msg, sizeof msg, "--signal takes a signal name or number: '%s'", v);
                return watch_usage_error(msg);
            }
        } else if ((v = watch_value(argc, argv, &i, "--format", &missing))) {
            if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0) {
                return watch_usage_error("--format takes text or json");
            }
            o->json = strcmp(v, "json") == 0;
        } else if ((v = watch_value(argc, argv, &i, "--output", &missing))) {
            o->output = v;
        } else if ((v = watch_value(argc, argv, &i, "--core-dir", &missing))) {
            o->core_dir = v;
        } else if ((v = watch_value(argc, argv, &i, "--fail-on", &missing))) {
            o->fail_on = v;
        } else if (strcmp(a, "--no-freeze") == 0) {
            o->no_freeze = true;
        } else if (missing) {
            snprintf(msg, sizeof msg, "%s needs a value", a);
            return watch_usage_error(msg);
        } else {
            snprintf(msg, sizeof msg, "unknown option '%s'", a);
            return watch_usage_error(msg);
        }
        if ((o->output && !*o->output) || (o->core_dir && !*o->core_dir) ||
            (o->fail_on && !*o->fail_on)) {
            snprintf(msg, sizeof msg, "%s needs a value", a);
            return watch_usage_error(msg);
        }
    }
    if (i >= argc) {
        return watch_usage_error("no command given: snarl watch [OPTIONS] -- CMD ARGS...");
    }
    o->cmd = argv + i;
    return 0;
}

/* ---- the process tree ---- */

static bool watch_read_stat(pid_t pid, watch_proc *p) {
    p->pid = pid;
    return cli_read_stat(pid, &p->state, &p->ppid);
}

/* Every process below us, parents before children: one pass over /proc
 * for each process's parent (works on any kernel, unlike
 * /proc/PID/task/TID/children), then the descendants of our own PID. As a
 * child subreaper we also adopt what the command orphans, so a daemonised
 * grandchild is still found. */
static size_t watch_tree(watch_proc **out) {
    *out = NULL;
    DIR *d = opendir("/proc");
    if (!d) {
        return 0;
    }
    watch_proc *all = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < WATCH_SCAN_MAX) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 512;
            watch_proc *nw = realloc(all, ncap * sizeof *nw);
            if (!nw) {
                break;
            }
            all = nw;
            cap = ncap;
        }
        if (watch_read_stat((pid_t)pid, &all[n])) {
            n++;
        }
    }
    closedir(d);
    watch_proc *tree = malloc((n ? n : 1) * sizeof *tree);
    size_t m = 0;
    if (tree) {
        pid_t self = getpid();
        /* Breadth first: tree[k] for k < m are the ones whose children we
         * still look for; the root is us, not listed. */
        for (size_t j = 0; j < n; j++) {
            if (all[j].ppid == self) {
                tree[m++] = all[j];
            }
        }
        for (size_t k = 0; k < m; k++) {
            for (size_t j = 0; j < n; j++) {
                if (all[j].ppid == tree[k].pid && all[j].pid != tree[k].pid) {
                    tree[m++] = all[j];
                }
            }
        }
    }
    free(all);
    *out = tree;
    return m;
}

/* ---- output ---- */

typedef struct watch_buf {
    char *data;
    size_t len;
    FILE *f;
} watch_buf;

static bool watch_buf_open(watch_buf *b) {
    b->data = NULL;
    b->len = 0;
    b->f = open_memstream(&b->data, &b->len);
    return b->f != NULL;
}

/* Closes the stream; the bytes stay in data (the caller frees them). */
static void watch_buf_close(watch_buf *b) {
    if (b->f) {
        fclose(b->f);
        b->f = NULL;
    }
}

/* ---- analysis ---- */

static void watch_read_cmdline(watch_result *r) {
    r->cmdline_len = cli_read_cmdline(r->pid, r->cmdline, sizeof r->cmdline);
}

static void watch_analyse_one(const watch_state *w, watch_result *r) {
    snarl_options opt = {.no_freeze = w->o.no_freeze};
    snarl_request req = {.command = "check",
                         .format = w->o.json ? SNARL_FORMAT_JSON : SNARL_FORMAT_TEXT,
                         .fail_on = w->o.fail_on};
    r->status = SNARL_STATUS_ERROR;
    snarl_session *s = snarl_open(&opt);
    if (!s) {
        snprintf(r->error, sizeof r->error, "out of memory");
        return;
    }
    watch_buf b;
    if (!watch_buf_open(&b)) {
        snprintf(r->error, sizeof r->error, "out of memory");
        snarl_close(s);
        return;
    }
    if (snarl_attach_pid(s, (int)r->pid) == 0) {
        r->status = snarl_run(s, &req, cli_sink, b.f);
    }
    watch_buf_close(&b);
    r->report = b.data;
    r->report_len = b.len;
    if (r->status == SNARL_STATUS_ERROR) {
        snprintf(r->error, sizeof r->error, "%s", snarl_error(s));
        snprintf(r->hint, sizeof r->hint, "%s", snarl_hint(s));
        r->exited = strcmp(snarl_error_name(s), "GONE") == 0;
    }
    snarl_close(s);
}

/* The exit status a report stands for: something found beats an error
 * (the finding is the answer), an error beats nothing found. */
static int watch_verdict(const watch_result *rs, size_t n) {
    bool found = false, failed = false;
    for (size_t i = 0; i < n; i++) {
        found = found || rs[i].status == SNARL_STATUS_FOUND;
        failed = failed || rs[i].status == SNARL_STATUS_ERROR;
    }
    return found ? SNARL_STATUS_FOUND : failed ? SNARL_STATUS_ERROR : WATCH_STATUS_TIMEOUT;
}

static void watch_summary(FILE *f, const watch_result *rs, size_t n) {
    size_t found = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        found += rs[i].status == SNARL_STATUS_FOUND;
        failed += rs[i].status == SNARL_STATUS_ERROR;
    }
    if (n == 0) {
        fputs("no Python process in the command's process tree", f);
        return;
    }
    if (found) {
        fprintf(f, "a problem found in %zu of %zu Python process%s", found, n, n == 1 ? "" : "es");
    } else {
        fprintf(f, "nothing found in %zu Python process%s", n, n == 1 ? "" : "es");
    }
    if (failed) {
        fprintf(f, "; %zu could not be analysed", failed);
    }
}

static void watch_render_text(FILE *f, const char *reason, const watch_result *rs, size_t n) {
    fputs("snarl watch: ", f);
    fputs(reason, f);
    fputs(".\n", f);
    for (size_t i = 0; i < n; i++) {
        const watch_result *r = &rs[i];
        fprintf(f, "\n== process %d (", (int)r->pid);
        cli_text_args(f, r->cmdline, r->cmdline_len);
        fprintf(f, "), parent %d ==\n", (int)r->ppid);
        if (r->status == SNARL_STATUS_ERROR) {
            fprintf(f, "could not be analysed: %s\n", r->error);
            if (r->hint[0]) {
                fprintf(f, "hint: %s\n", r->hint);
            }
        } else {
            fwrite(r->report, 1, r->report_len, f);
        }
    }
    fputs("\nsnarl watch: ", f);
    watch_summary(f, rs, n);
    fputs(".\n", f);
}

static void watch_render_json(FILE *f, const watch_state *w, const char *why, double waited,
                              double took, const watch_result *rs, size_t n) {
    fputs("{\"schema\":\"snarl-watch/1\",\"reason\":", f);
    cli_json_cstr(f, why);
    fputs(",\"command\":[", f);
    for (char **a = w->o.cmd; *a; a++) {
        fputs(a == w->o.cmd ? "" : ",", f);
        cli_json_str(f, *a, strlen(*a));
    }
    fputs("],\"timeout\":", f);
    if (w->o.timeout > 0) {
        fprintf(f, "%.3f", w->o.timeout);
    } else {
        fputs("null", f);
    }
    fprintf(f, ",\"elapsed\":%.3f,\"analysis_seconds\":%.3f,\"status\":%d,\"processes\":[", waited,
            took, watch_verdict(rs, n));
    for (size_t i = 0; i < n; i++) {
        const watch_result *r = &rs[i];
        fprintf(f, "%s{\"pid\":%d,\"ppid\":%d,\"cmdline\":", i ? "," : "", (int)r->pid,
                (int)r->ppid);
        cli_json_args(f, r->cmdline, r->cmdline_len);
        fprintf(f, ",\"status\":%d,\"error\":", r->status);
        cli_json_cstr(f, r->status == SNARL_STATUS_ERROR ? r->error : NULL);
        fputs(",\"hint\":", f);
        cli_json_cstr(f, r->status == SNARL_STATUS_ERROR ? r->hint : NULL);
        fputs(",\"core\":", f);
        cli_json_cstr(f, r->core);
        fputs(",\"report\":", f);
        cli_json_embed(f, r->status == SNARL_STATUS_ERROR ? NULL : r->report,
                       r->status == SNARL_STATUS_ERROR ? 0 : r->report_len);
        fputc('}', f);
    }
    fputs("],\"summary\":", f);
    watch_buf b;
    if (watch_buf_open(&b)) {
        watch_summary(b.f, rs, n);
        watch_buf_close(&b);
        cli_json_str(f, b.data, b.len);
        free(b.data);
    } else {
        fputs("null", f);
    }
    fputs("}\n", f);
}

static void watch_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void watch_log(const char *fmt, ...) {
    /* It names commands and paths the user or the tree chose: escaped. */
    char raw[WATCH_PATH_MAX + 512], clean[sizeof raw * 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    snarl_escape(clean, sizeof clean, raw, strlen(raw));
    fprintf(stderr, "snarl watch: %s\n", clean);
    fflush(stderr);
}

/* Reads every Python process of the tree, writes the report, then the
 * cores. Returns the status the report stands for (1, 124 or 2). */
static int watch_analyse(watch_state *w, bool deadline, double since) {
    double t0 = watch_now();
    watch_proc *tree = NULL;
    size_t ntree = watch_tree(&tree);
    watch_result *rs = calloc(WATCH_PYTHONS_MAX, sizeof *rs);
    size_t n = 0;
    if (!rs) {
        free(tree);
        watch_log("out of memory");
        return SNARL_STATUS_ERROR;
    }
    for (size_t i = 0; i < ntree && n < WATCH_PYTHONS_MAX; i++) {
        if (tree[i].state == 'Z' || tree[i].state == 'X' || !cli_is_python(tree[i].pid, NULL)) {
            continue;
        }
        watch_result *r = &rs[n];
        r->pid = tree[i].pid;
        r->ppid = tree[i].ppid;
        watch_read_cmdline(r);
        watch_analyse_one(w, r);
        /* A process that ended between the listing and the end of the read
         * was not stuck: leave it out rather than report it as not
         * analysed, and say so. The engine's word, or its test of the
         * PID for a failure that came before the engine had it. */
        if (r->status == SNARL_STATUS_ERROR && (r->exited || snarl_pid_exited((int)r->pid))) {
            watch_log("process %d exited while it was being read; it is not in the report",
                      (int)r->pid);
            free(r->report);
            memset(r, 0, sizeof *r);
            continue;
        }
        if (w->o.core_dir) {
            snprintf(r->core, sizeof r->core, "%s/core.%d", w->o.core_dir, (int)r->pid);
        }
        n++;
    }
    free(tree);
    double took = watch_now() - t0;
    char reason[512];
    if (deadline) {
        snprintf(reason, sizeof reason, "'%s' did not finish within %gs", w->o.cmd[0],
                 w->o.timeout);
    } else {
        snprintf(reason, sizeof reason, "SIGUSR1: '%s' has run for %.1fs", w->o.cmd[0],
                 t0 - w->started);
    }
    int status = watch_verdict(rs, n);
    /* Straight to the file through a stream of its own: the report of a
     * million tasks is hundreds of megabytes, not to be copied again. */
    fflush(stderr);
    int fd = dup(w->out_fd >= 0 ? w->out_fd : STDERR_FILENO);
    FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    bool written = false;
    if (out) {
        if (w->o.json) {
            watch_render_json(out, w, deadline ? "timeout" : "signal", t0 - w->started, took, rs,
                              n);
        } else {
            watch_render_text(out, reason, rs, n);
        }
        written = !ferror(out);
        written = fclose(out) == 0 && written;
    } else if (fd >= 0) {
        close(fd);
    }
    if (!written) {
        watch_log("cannot write the report to %s: %s", w->o.output ? w->o.output : "stderr",
                  strerror(errno));
        status = SNARL_STATUS_ERROR;
    }
    if (w->o.output) {
        watch_log("%s; report in %s (%.2fs after the %s).", reason, w->o.output,
                  watch_now() - since, deadline ? "deadline" : "signal");
    }
    /* Cores after the report: the report must not wait for gigabytes. */
    for (size_t i = 0; i < n; i++) {
        char msg[512];
        if (!rs[i].core[0]) {
            continue;
        }
        if (cli_dump_core(rs[i].pid, rs[i].core, msg, sizeof msg) == 0) {
            watch_log("core of process %d written to %s", (int)rs[i].pid, rs[i].core);
        } else {
            watch_log("no core of process %d: %s", (int)rs[i].pid, msg);
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(rs[i].report);
    }
    free(rs);
    return status;
}

/* ---- running and stopping the command ---- */

static void watch_record_exit(watch_state *w, int st) {
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
        w->child_done = true;
        w->child_status = st;
    }
}

/* Reaps the command and whatever it orphaned onto us. */
static void watch_reap(watch_state *w) {
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (r <= 0) {
            if (r < 0 && errno == ECHILD && !w->child_done) {
                /* Reaped by someone else (the engine waits on threads it
                 * freezes): its status is lost. */
                w->child_done = true;
                w->child_status = -1;
            }
            return;
        }
        if (r == w->child) {
            watch_record_exit(w, st);
        }
    }
}

static int watch_exit_status(const watch_state *w) {
    int st = w->child_status;
    if (st == -1) {
        watch_log("the command's exit status was lost while its process was read");
        return SNARL_STATUS_ERROR;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : WATCH_SIGNAL_BASE + WTERMSIG(st);
}

/* Sends sig to the command's process group and to every process of the
 * tree (one that left the group with setsid is still ours). */
static size_t watch_signal_tree(const watch_state *w, int sig) {
    if (!w->child_done) {
        kill(-w->child, sig);
    }
    watch_proc *tree = NULL;
    size_t n = watch_tree(&tree), alive = 0;
    for (size_t i = 0; i < n; i++) {
        if (tree[i].state != 'Z' && tree[i].state != 'X') {
            kill(tree[i].pid, sig);
            alive++;
        }
    }
    free(tree);
    return alive;
}

/* Waits until the command has exited and nothing of its tree is left, or
 * until `seconds`; true when all is gone. */
static bool watch_wait_gone(watch_state *w, double seconds) {
    double end = watch_now() + seconds;
    for (;;) {
        watch_reap(w);
        watch_proc *tree = NULL;
        size_t n = watch_tree(&tree), alive = 0;
        for (size_t i = 0; i < n; i++) {
            alive += tree[i].state != 'Z' && tree[i].state != 'X';
        }
        free(tree);
        if (w->child_done && alive == 0) {
            return true;
        }
        if (watch_now() >= end) {
            return false;
        }
        struct timespec ts = {0, WATCH_POLL_NS};
        siginfo_t si;
        int sig = sigtimedwait(&w->handled, &si, &ts);
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT) {
            return false; /* asked to hurry: kill now */
        }
    }
}

static void watch_stop(watch_state *w) {
    watch_log("stopping '%s' and its processes (SIG%s, then SIGKILL after %gs)", w->o.cmd[0],
              watch_signal_name(w->o.stop_signal), w->o.kill_after);
    watch_signal_tree(w, w->o.stop_signal);
    if (watch_wait_gone(w, w->o.kill_after)) {
        return;
    }
    size_t left = watch_signal_tree(w, SIGKILL);
    watch_log("%zu process%s still running after SIG%s: killed", left, left == 1 ? "" : "es",
              watch_signal_name(w->o.stop_signal));
    if (!watch_wait_gone(w, WATCH_REAP_WAIT)) {
        watch_log("some processes did not die (uninterruptible sleep?); leaving them");
    }
}

/* The child side of the fork: its own process group (the whole tree can
 * be signalled at once), the terminal's foreground when we had it, our
 * signal settings undone, then exec. An exec failure reaches the parent
 * through the close-on-exec pipe. */
static void watch_exec_child(watch_state *w, int report_fd) {
    setpgid(0, 0);
    if (w->tty_given) {
        tcsetpgrp(w->tty_fd, getpid());
    }
    sigaction(SIGPIPE, &w->old_pipe, NULL);
    sigprocmask(SIG_SETMASK, &w->old_mask, NULL);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getppid());
    setenv("SNARL_WATCH_PID", pid, 1);
    execvp(w->o.cmd[0], w->o.cmd);
    int e = errno;
    ssize_t ignored = write(report_fd, &e, sizeof e);
    (void)ignored;
    _exit(e == ENOENT ? WATCH_STATUS_NOT_FOUND : WATCH_STATUS_NOT_EXECUTABLE);
}

static int watch_spawn(watch_state *w) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        watch_log("cannot start '%s': %s", w->o.cmd[0], strerror(errno));
        return -1;
    }
    fflush(NULL);
    w->child = fork();
    if (w->child < 0) {
        watch_log("cannot start '%s': %s", w->o.cmd[0], strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (w->child == 0) {
        close(p[0]);
        watch_exec_child(w, p[1]);
    }
    close(p[1]);
    /* Both sides set the group, so neither the tcsetpgrp below nor a
     * signal can find the child still in ours. */
    setpgid(w->child, w->child);
    if (w->tty_given) {
        tcsetpgrp(w->tty_fd, w->child);
    }
    int e = 0;
    ssize_t r;
    while ((r = read(p[0], &e, sizeof e)) < 0 && errno == EINTR) {
    }
    close(p[0]);
    if (r == (ssize_t)sizeof e) {
        watch_log("cannot run '%s': %s", w->o.cmd[0], strerror(e));
        int st;
        waitpid(w->child, &st, 0);
        watch_record_exit(w, st);
        return -1;
    }
    return 0;
}

static void watch_restore_tty(watch_state *w) {
    if (w->tty_given) {
        tcsetpgrp(w->tty_fd, getpgrp());
        w->tty_given = false;
    }
}

int cli_watch_main(int argc, char **argv) {
    watch_state w;
    memset(&w, 0, sizeof w);
    w.out_fd = -1;
    bool help = false;
    int rc = watch_parse(argc, argv, &w.o, &help);
    if (help) {
        fputs(watch_usage, stdout);
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    if (w.o.core_dir) {
        struct stat st;
        if (mkdir(w.o.core_dir, 0700) != 0 && errno != EEXIST) {
            char msg[WATCH_PATH_MAX + 64];
            snprintf(msg, sizeof msg, "cannot create --core-dir %s: %s", w.o.core_dir,
                     strerror(errno));
            return watch_usage_error(msg);
        }
        if (stat(w.o.core_dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
            access(w.o.core_dir, W_OK) != 0) {
            char msg[WATCH_PATH_MAX + 64];
            snprintf(msg, sizeof msg, "--core-dir %s is not a writable directory", w.o.core_dir);
            return watch_usage_error(msg);
        }
    }
    /* Opened (and emptied) before the command runs: a bad path is a usage
     * error now, not a lost report later. */
    if (w.o.output &&
        (w.out_fd = open(w.o.output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        char msg[WATCH_PATH_MAX + 64];
        snprintf(msg, sizeof msg, "cannot write --output %s: %s", w.o.output, strerror(errno));
        return watch_usage_error(msg);
    }
    /* Orphans of the command are re-parented to us, not to init: still in
     * the tree we read and stop. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    /* The signals we handle are blocked and taken with sigtimedwait: no
     * handlers, nothing async. One that comes while a process is frozen
     * waits until the engine has thawed it (a read takes seconds at most;
     * if we are killed instead, the kernel thaws it). SIGTTOU lets us hand
     * the terminal over. */
    sigemptyset(&w.handled);
    int taken[] = {SIGCHLD, SIGUSR1, SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof taken / sizeof *taken; i++) {
        sigaddset(&w.handled, taken[i]);
    }
    sigset_t block = w.handled;
    sigaddset(&block, SIGTTOU);
    sigprocmask(SIG_BLOCK, &block, &w.old_mask);
    /* A report written to a closed pipe must not kill us and orphan the
     * command; the command gets the disposition we were given. */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &w.old_pipe);
    /* An interactive command reads the terminal: it gets the foreground,
     * as a shell gives it to a job, and we take it back at the end. */
    w.tty_fd = STDIN_FILENO;
    w.tty_given = isatty(w.tty_fd) && tcgetpgrp(w.tty_fd) == getpgrp();
    w.started = watch_now();
    if (watch_spawn(&w) != 0) {
        watch_restore_tty(&w);
        return w.child_done ? watch_exit_status(&w) : SNARL_STATUS_ERROR;
    }
    double deadline = w.o.timeout > 0 ? w.started + w.o.timeout : 0;
    int status = 0;
    for (;;) {
        watch_reap(&w);
        if (w.child_done) {
            status = watch_exit_status(&w);
            break;
        }
        double now = watch_now();
        if (deadline && now >= deadline) {
            watch_restore_tty(&w);
            status = watch_analyse(&w, true, deadline);
            watch_stop(&w);
            break;
        }
        siginfo_t si;
        int sig;
        if (deadline) {
            double left = deadline - now;
            struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
            sig = sigtimedwait(&w.handled, &si, &ts);
        } else {
            sig = sigwaitinfo(&w.handled, &si);
        }
        if (sig == SIGUSR1) {
            watch_analyse(&w, false, watch_now());
        } else if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT) {
            /* Passed on; the command's own exit status then follows. */
            kill(-w.child, sig);
        }
    }
    watch_restore_tty(&w);
    if (w.out_fd >= 0 && close(w.out_fd) != 0) {
        watch_log("cannot write --output %s: %s", w.o.output, strerror(errno));
    }
    return status;
}
