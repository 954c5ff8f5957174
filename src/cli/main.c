/* The snarl command line: parses argv, attaches the engine to a PID or a core
 * file, prints what the engine renders, and maps the outcome to the exit
 * status (0 nothing found, 1 something found, 2 could not analyse). `watch`
 * is cli_watch.c's; SVG and --coredumpctl run the programs of cli_tools.c. */
#include <ctype.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../snarl.h"
#include "cli.h"

#define SNARL_VERSION "0.1.0"

static const char cli_usage[] =
    "usage: snarl [COMMAND] [OPTIONS] TARGET [EXECUTABLE]\n"
    "       snarl check --all [OPTIONS]\n"
    "\n"
    "Tells why an asyncio program is stuck, from a live process or a core dump.\n"
    "TARGET is a PID, or a core file optionally followed by the executable.\n"
    "\n"
    "commands:\n"
    "  check       (the default) the diagnoses: deadlocks, cycles, a loop nothing can wake,\n"
    "              a blocked loop, tasks only weak references keep alive; then a verdict\n"
    "  stacks      every thread's Python stack, innermost frame first\n"
    "  tasks       every asyncio task: state, innermost frame, what it waits on, who awaits it\n"
    "  tree        the await tree from the root tasks down (cycles marked, never refused)\n"
    "  graph       the wait-for graph of tasks and resources (--format dot|mermaid|json)\n"
    "  task ID     one task in full, with the locals of each frame\n"
    "  watch [OPTIONS] -- CMD ARGS...\n"
    "              runs CMD; if it does not finish in time, reports on its Python processes\n"
    "              and stops it ('snarl watch --help')\n"
    "\n"
    "options:\n"
    "  --format FORMAT      text or json; graph: dot, svg, mermaid or json (default text, dot)\n"
    "  --all                check, without a TARGET: every Python process of this host (or\n"
    "                       PID namespace), read in parallel; a line each, then the report\n"
    "                       of each stuck one; tasks: list identical tasks one by one\n"
    "  --all-objects        also look for tasks on the GC heap, not only in registries\n"
    "  --fail-on KIND,...   check: only these diagnosis kinds make the exit status 1\n"
    "  --sysroot DIR        where the core's executable and libraries live\n"
    "  --coredumpctl MATCH  the target is the core systemd-coredump keeps for MATCH (a PID,\n"
    "                       a command name or a path), fetched with 'coredumpctl dump'\n"
    "  --no-freeze          live targets: read without stopping the process\n"
    "  --timing             say on stderr where the time went and how long the target\n"
    "                       was stopped\n"
    "  -h, --help           this help\n"
    "  --version            snarl's version\n"
    "\n"
    "TARGET may be a core compressed by systemd-coredump (zstd, xz or lz4).\n"
    "\n"
    "exit status: 0 nothing found, 1 a problem was reported (check; --all: in any process),\n"
    "2 could not analyse (--all: could not run)\n";

static const char *const cli_commands[] = {"check", "stacks", "tasks", "tree", "graph", "task"};

int cli_sink(void *ctx, const char *data, size_t len) {
    return fwrite(data, 1, len, (FILE *)ctx) == len ? 0 : -1;
}

static void cli_on_signal(int sig) {
    /* Resume the target before dying; the kernel would too, but a clean
     * detach also keeps it from seeing a stray stop. */
    snarl_emergency_thaw();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* In check --all's workers too: each resumes the target it froze. */
static void cli_catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cli_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int cli_fail(const char *msg, const char *hint) {
    /* A message may quote an argument or a file name: escaped as the
     * engine's own are, so stderr stays clean text. */
    char clean[2048];
    snarl_escape(clean, sizeof clean, msg, strlen(msg));
    fprintf(stderr, "snarl: %s\n", clean);
    if (hint && hint[0]) {
        fprintf(stderr, "hint: %s\n", hint);
    }
    return SNARL_STATUS_ERROR;
}

static bool cli_is_command(const char *s) {
    for (size_t k = 0; k < sizeof cli_commands / sizeof *cli_commands; k++) {
        if (strcmp(s, cli_commands[k]) == 0) {
            return true;
        }
    }
    return false;
}

static bool cli_is_pid(const char *s) {
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s)) {
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "watch") == 0) {
        return cli_watch_main(argc - 1, argv + 1);
    }
    snarl_options opt = {0};
    snarl_request req = {.command = NULL, .format = SNARL_FORMAT_TEXT};
    const char *positional[3];
    int npos = 0;
    bool format_given = false;
    bool svg = false; /* graph as SVG: DOT through Graphviz's dot */
    const char *coredumpctl = NULL;
    bool timing = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(cli_usage, stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("snarl %s\n", SNARL_VERSION);
            return 0;
        } else if (strcmp(a, "--format") == 0 || strncmp(a, "--format=", 9) == 0) {
            const char *v = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : "");
            format_given = true;
            if (strcmp(v, "text") == 0) {
                req.format = SNARL_FORMAT_TEXT;
            } else if (strcmp(v, "json") == 0) {
                req.format = SNARL_FORMAT_JSON;
            } else if (strcmp(v, "dot") == 0) {
                req.format = SNARL_FORMAT_DOT;
            } else if (strcmp(v, "mermaid") == 0) {
                req.format = SNARL_FORMAT_MERMAID;
            } else if (strcmp(v, "svg") == 0) {
                req.format = SNARL_FORMAT_DOT;
            } else {
                return cli_fail("--format takes text, json, dot, svg or mermaid",
                                "see 'snarl --help'");
            }
            svg = strcmp(v, "svg") == 0;
        } else if (strcmp(a, "--sysroot") == 0 || strncmp(a, "--sysroot=", 10) == 0) {
            opt.sysroot = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
            if (!opt.sysroot || !*opt.sysroot) {
                return cli_fail("--sysroot needs a directory", "see 'snarl --help'");
            }
        } else if (strcmp(a, "--coredumpctl") == 0 || strncmp(a, "--coredumpctl=", 14) == 0) {
            coredumpctl = a[13] == '=' ? a + 14 : (i + 1 < argc ? argv[++i] : "");
            if (!*coredumpctl) {
                return cli_fail("--coredumpctl needs a PID, a command name or a path",
                                "see 'snarl --help'");
            }
        } else if (strcmp(a, "--no-freeze") == 0) {
            opt.no_freeze = 1;
        } else if (strcmp(a, "--timing") == 0) {
            timing = true;
        } else if (strcmp(a, "--all") == 0) {
            req.all = 1;
        } else if (strcmp(a, "--all-objects") == 0) {
            req.all_objects = 1;
        } else if (strcmp(a, "--fail-on") == 0 || strncmp(a, "--fail-on=", 10) == 0) {
            req.fail_on = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : "");
            if (!*req.fail_on) {
                return cli_fail("--fail-on needs diagnosis kinds", "see 'snarl --help'");
            }
        } else if (a[0] == '-' && a[1]) {
            char msg[256];
            snprintf(msg, sizeof msg, "unknown option '%s'", a);
            return cli_fail(msg, "see 'snarl --help'");
        } else if (!req.command && npos == 0 && cli_is_command(a)) {
            req.command = a;
        } else if (req.command && strcmp(req.command, "task") == 0 && !req.task_id) {
            req.task_id = a;
        } else {
            if (!req.command && npos == 0 && strcmp(a, "watch") == 0) {
                return cli_fail("'watch' comes first: snarl watch [OPTIONS] -- CMD ARGS...",
                                "see 'snarl watch --help'");
            }
            if (npos == 2) {
                return cli_fail("too many arguments", "see 'snarl --help'");
            }
            positional[npos++] = a;
        }
    }
    if (!req.command) {
        req.command = "check";
    }
    if (svg && strcmp(req.command, "graph") != 0) {
        return cli_fail("--format svg is for 'graph'", "see 'snarl --help'");
    }
    if (svg && !cli_on_path("dot")) {
        return cli_fail("--format svg needs Graphviz's 'dot', which is not on PATH",
                        "install Graphviz, or print --format dot and render it elsewhere");
    }
    /* The core systemd-coredump keeps: fetched into a temporary file, which
     * then stands as the target; an executable may still follow. */
    char fetched[4096] = "";
    if (coredumpctl) {
        if (npos > 1) {
            return cli_fail("with --coredumpctl only an executable may follow",
                            "see 'snarl --help'");
        }
        if (npos == 1) {
            positional[1] = positional[0];
        }
        if (cli_coredumpctl_fetch(coredumpctl, fetched, sizeof fetched) != 0) {
            return SNARL_STATUS_ERROR;
        }
        positional[0] = fetched;
        npos++;
    }
    if (strcmp(req.command, "check") == 0 && req.all) {
        /* check --all: every Python process instead of one target. */
        if (npos > 0 || coredumpctl) {
            return cli_fail("check --all reads every Python process; it takes no target",
                            "drop --all to read one PID or core");
        }
        if (opt.sysroot || timing) {
            return cli_fail(opt.sysroot ? "--sysroot is for cores, not for check --all"
                                        : "--timing is for one target, not for check --all",
                            "see 'snarl --help'");
        }
        if (req.format != SNARL_FORMAT_TEXT && req.format != SNARL_FORMAT_JSON) {
            return cli_fail("check --all prints text or json", "see 'snarl --help'");
        }
        cli_catch_signals();
        return cli_all_main(&opt, &req);
    }
    if (npos == 0) {
        return cli_fail("no target given", "pass a PID or a core file; see 'snarl --help'");
    }
    if (strcmp(req.command, "task") == 0 && !req.task_id) {
        return cli_fail("'task' needs a task id", "'snarl tasks TARGET' lists them");
    }
    if (strcmp(req.command, "graph") == 0 && !format_given) {
        req.format = SNARL_FORMAT_DOT;
    }
    bool is_pid = !coredumpctl && cli_is_pid(positional[0]);
    if (is_pid && npos > 1) {
        return cli_fail("an executable can only follow a core file", "see 'snarl --help'");
    }
    if (!is_pid && access(positional[0], F_OK) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "'%s' is neither a PID nor an existing core file", positional[0]);
        return cli_fail(msg, "pass a PID or a core file; see 'snarl --help'");
    }
    cli_catch_signals();

    snarl_session *s = snarl_open(&opt);
    if (!s) {
        return cli_fail("out of memory", NULL);
    }
    int rc = is_pid ? snarl_attach_pid(s, atoi(positional[0]))
                    : snarl_attach_core(s, positional[0], npos > 1 ? positional[1] : NULL);
    int status = SNARL_STATUS_ERROR;
    if (rc == 0 && svg) {
        pid_t dot = 0;
        FILE *to_dot = cli_svg_start(&dot);
        if (to_dot) {
            status = snarl_run(s, &req, cli_sink, to_dot);
            int st = cli_svg_finish(to_dot, dot);
            status = status == SNARL_STATUS_ERROR ? status : st == 0 ? status : st;
        }
    } else if (rc == 0) {
        status = snarl_run(s, &req, cli_sink, stdout);
    }
    if (fetched[0]) {
        unlink(fetched);
    }
    if (timing && rc == 0) {
        snarl_timing tm;
        snarl_last_timing(s, &tm);
        fprintf(stderr,
                "snarl: timing: frozen %.1f ms, read and model %.1f ms, analysis %.1f ms, "
                "render %.1f ms; %llu reads, %llu from the backend\n",
                tm.frozen_ms, tm.read_ms, tm.analyse_ms, tm.render_ms, tm.reads, tm.backend_reads);
    }
    if (fflush(stdout) != 0 && status != SNARL_STATUS_ERROR) {
        status = cli_fail("cannot write the output", NULL);
    }
    if (rc != 0 || status == SNARL_STATUS_ERROR) {
        if (snarl_error_code(s) != 0) {
            cli_fail(snarl_error(s), snarl_hint(s));
        }
        status = SNARL_STATUS_ERROR;
    }
    snarl_close(s);
    return status;
}
