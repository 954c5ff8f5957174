/* The kill hook of build/snarl-dying, a test build of the snarl command line
 * (tests/e2e/test_target_safety.py): the target is killed at a chosen point
 * of the live backend, so that each way of dying under the read is tried
 * on purpose, not only when a random kill lands there. Never installed;
 * build/snarl itself has no such hook set, and reads no such variable.
 *
 *   SNARL_TEST_KILL=POINT:N   SIGKILL the target at the Nth time the live
 *                             backend passes POINT (mem.h lists them)
 *   SNARL_TEST_KILL_WAIT=W    then: dead (the default) waits until it is a
 *                             zombie or gone, gone until its parent reaped
 *                             it, none goes on at once (it is still dying)
 *   SNARL_TEST_COUNT=FILE     at exit, write how often each point was passed
 *                             ("POINT COUNT" lines), to choose N from */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/mem/mem.h"

/* How long the hook waits for the killed target to be dead (or reaped):
 * milliseconds normally, far more on a loaded machine; past this the run
 * goes on and the test sees whatever snarl then says. */
#define DYING_WAIT_MS 10000
/* Distinct points; mem.h names six. */
#define DYING_POINTS_MAX 16

static const char *dying_points[DYING_POINTS_MAX];
static unsigned long dying_counts[DYING_POINTS_MAX];
static size_t dying_npoints;
static char dying_kill_point[32];
static unsigned long dying_kill_at;
static const char *dying_wait = "dead";
static const char *dying_count_file;
static bool dying_fired;

/* Z or X in /proc/PID/stat, or no such process (reaped). */
static bool dying_dead(int pid, bool reaped) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return true;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return true;
    }
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return !reaped && paren && (paren[2] == 'Z' || paren[2] == 'X');
}

static void dying_hook(int pid, const char *point) {
    size_t i = 0;
    while (i < dying_npoints && strcmp(dying_points[i], point) != 0) {
        i++;
    }
    if (i == dying_npoints && dying_npoints < DYING_POINTS_MAX) {
        dying_points[dying_npoints++] = point;
    }
    if (i < DYING_POINTS_MAX) {
        dying_counts[i]++;
    }
    if (dying_fired || i >= DYING_POINTS_MAX || strcmp(point, dying_kill_point) != 0 ||
        dying_counts[i] != dying_kill_at) {
        return;
    }
    dying_fired = true;
    kill(pid, SIGKILL);
    if (strcmp(dying_wait, "none") == 0) {
        return;
    }
    bool reaped = strcmp(dying_wait, "gone") == 0;
    struct timespec ms = {0, 1000000};
    for (int waited = 0; waited < DYING_WAIT_MS && !dying_dead(pid, reaped); waited++) {
        nanosleep(&ms, NULL);
    }
}

static void dying_report(void) {
    FILE *f = fopen(dying_count_file, "w");
    if (!f) {
        return;
    }
    for (size_t i = 0; i < dying_npoints; i++) {
        fprintf(f, "%s %lu\n", dying_points[i], dying_counts[i]);
    }
    fprintf(f, "fired %d\n", dying_fired ? 1 : 0);
    fclose(f);
}

__attribute__((constructor)) static void dying_init(void) {
    const char *kill_at = getenv("SNARL_TEST_KILL");
    const char *wait = getenv("SNARL_TEST_KILL_WAIT");
    dying_count_file = getenv("SNARL_TEST_COUNT");
    if (kill_at) {
        const char *colon = strchr(kill_at, ':');
        size_t len = colon ? (size_t)(colon - kill_at) : 0;
        if (len > 0 && len < sizeof dying_kill_point) {
            memcpy(dying_kill_point, kill_at, len);
            dying_kill_point[len] = '\0';
            dying_kill_at = strtoul(colon + 1, NULL, 10);
        }
    }
    if (wait) {
        dying_wait = wait;
    }
    if (dying_count_file) {
        atexit(dying_report);
    }
    mem_live_test_hook = dying_hook;
}
