/* The outside programs the command line leans on, each optional: Graphviz's
 * `dot` turns `graph`'s DOT into SVG (--format svg), systemd's `coredumpctl`
 * fetches a core it keeps (--coredumpctl MATCH). When one is missing the
 * message says so and what to do instead; nothing else depends on them. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* Longest PATH entry plus program name we try; longer ones are skipped. */
#define CLI_PATH_MAX 4096

bool cli_on_path(const char *prog) {
    const char *path = getenv("PATH");
    if (!path) {
        path = "/usr/local/bin:/usr/bin:/bin";
    }
    for (const char *p = path;;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char cand[CLI_PATH_MAX];
        struct stat st;
        /* An empty entry is the current directory, as execvp has it. */
        if (snprintf(cand, sizeof cand, "%.*s%s%s", (int)n, p, n ? "/" : "", prog) <
                (int)sizeof cand &&
            stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
            return true;
        }
        if (!end) {
            return false;
        }
        p = end + 1;
    }
}

FILE *cli_svg_start(pid_t *pid) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        cli_fail("cannot start Graphviz's dot: no pipe", NULL);
        return NULL;
    }
    fflush(stdout);
    *pid = fork();
    if (*pid < 0) {
        close(p[0]);
        close(p[1]);
        cli_fail("cannot start Graphviz's dot: fork failed", NULL);
        return NULL;
    }
    if (*pid == 0) {
        dup2(p[0], STDIN_FILENO);
        execlp("dot", "dot", "-Tsvg", (char *)NULL);
        _exit(127);
    }
    close(p[0]);
    /* dot may die before reading everything: its exit status says why,
     * not a SIGPIPE that would kill us without a word. */
    signal(SIGPIPE, SIG_IGN);
    FILE *in = fdopen(p[1], "w");
    if (!in) {
        close(p[1]);
        waitpid(*pid, NULL, 0);
        cli_fail("cannot start Graphviz's dot: out of memory", NULL);
    }
    return in;
}

int cli_svg_finish(FILE *in, pid_t pid) {
    bool written = fclose(in) == 0;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "Graphviz's dot failed (%s %d)",
                 WIFEXITED(st) ? "exit status" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return cli_fail(msg, "'snarl graph --format dot' prints the graph dot was given");
    }
    if (!written) {
        return cli_fail("cannot write the graph to Graphviz's dot", NULL);
    }
    return SNARL_STATUS_CLEAN;
}

int cli_coredumpctl_fetch(const char *match, char *path, size_t cap) {
    if (!cli_on_path("coredumpctl")) {
        return cli_fail("--coredumpctl needs systemd's coredumpctl, which is not on PATH",
                        "on the machine that keeps the core run 'coredumpctl dump -o FILE MATCH', "
                        "then 'snarl check FILE'");
    }
    const char *dir = getenv("TMPDIR");
    if (snprintf(path, cap, "%s/snarl-coredump-XXXXXX", dir && *dir ? dir : "/tmp") >= (int)cap) {
        return cli_fail("$TMPDIR is too long a path", NULL);
    }
    int fd = mkstemp(path);
    if (fd < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "cannot make a temporary file for the core: %s", strerror(errno));
        return cli_fail(msg, "set TMPDIR to a writable directory");
    }
    close(fd);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        unlink(path);
        return cli_fail("cannot run coredumpctl: fork failed", NULL);
    }
    if (pid == 0) {
        /* Its summary of the core it picked is for people: keep our stdout
         * for the report (it may be JSON). */
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execlp("coredumpctl", "coredumpctl", "dump", "-o", path, match, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    struct stat sb;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || stat(path, &sb) != 0 || sb.st_size == 0) {
        unlink(path);
        char msg[512];
        snprintf(msg, sizeof msg, "coredumpctl has no core for '%s' (coredumpctl %s %d)", match,
                 WIFEXITED(st) ? "exit status" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return cli_fail(msg, "'coredumpctl list' shows the cores it keeps; MATCH is a PID, a "
                             "command name or a path");
    }
    return SNARL_STATUS_CLEAN;
}
