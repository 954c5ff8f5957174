/* Telling a live target that died from one that cannot be read, over real
 * child processes: running, killed and not reaped (a zombie), reaped, a PID
 * given to another process, and a process whose main thread ended alone
 * while another thread runs on (alive, though its main thread is a zombie);
 * a target killed while frozen is handed on to its parent at the thaw. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/mem/mem.h"
#include "unit.h"

/* How long a child may take to reach the state a test waits for. */
#define LIVE_TEST_WAIT_MS 5000

/* The state letter of /proc/PID/stat, or 0 when there is none. */
static char proc_state(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' ? paren[2] : 0;
}

static bool wait_state(pid_t pid, char want) {
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < LIVE_TEST_WAIT_MS; i++) {
        if (proc_state(pid) == want) {
            return true;
        }
        nanosleep(&ms, NULL);
    }
    return false;
}

static pid_t sleeping_child(void) {
    pid_t pid = fork();
    if (pid == 0) {
        for (;;) {
            pause();
        }
    }
    return pid;
}

TEST(proc_exited_is_false_for_a_running_process_and_true_once_it_is_a_zombie) {
    pid_t pid = sleeping_child();
    if (!CHECK(pid > 0) || !CHECK(wait_state(pid, 'S'))) {
        return;
    }
    uint64_t start = mem_proc_start(pid);
    CHECK(start != 0);
    CHECK(!mem_proc_exited(pid, start));
    CHECK(!mem_proc_exited(pid, 0));
    kill(pid, SIGKILL);
    CHECK(wait_state(pid, 'Z')); /* not reaped yet: still in /proc */
    CHECK(mem_proc_exited(pid, start));
    waitpid(pid, NULL, 0);
    CHECK(mem_proc_exited(pid, start)); /* reaped: no such PID */
}

TEST(proc_exited_is_true_when_another_process_has_the_pid) {
    uint64_t start = mem_proc_start(getpid());
    CHECK(start != 0);
    CHECK(!mem_proc_exited(getpid(), start));
    CHECK(mem_proc_exited(getpid(), start + 1));
}

TEST(proc_exited_is_true_for_a_pid_no_process_has) {
    CHECK(mem_proc_exited(-1, 0) == false); /* not a PID at all */
    pid_t pid = fork();
    if (pid == 0) {
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    CHECK(mem_proc_exited(pid, 0));
}

static void *park(void *arg) {
    (void)arg;
    for (;;) {
        pause();
    }
    return NULL;
}

TEST(proc_exited_is_false_while_a_thread_outlives_the_main_thread) {
    pid_t pid = fork();
    if (pid == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, park, NULL) != 0) {
            _exit(1);
        }
        pthread_exit(NULL);
    }
    if (!CHECK(pid > 0) || !CHECK(wait_state(pid, 'Z'))) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return;
    }
    CHECK(!mem_proc_exited(pid, mem_proc_start(pid)));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK(mem_proc_exited(pid, 0));
}

TEST(live_open_of_a_zombie_says_it_has_already_exited) {
    pid_t pid = sleeping_child();
    if (!CHECK(pid > 0)) {
        return;
    }
    kill(pid, SIGKILL);
    CHECK(wait_state(pid, 'Z'));
    err_record err;
    err_clear(&err);
    mem *m = mem_live_open(&err, (int)pid, true);
    CHECK(m == NULL);
    mem_close(m);
    CHECK_ERR(err.code, ERR_GONE);
    char want[64];
    snprintf(want, sizeof want, "process %d has already exited", (int)pid);
    CHECK_STR(err.msg, want);
    CHECK(strstr(err.hint, "zombie") != NULL);
    waitpid(pid, NULL, 0);
    err_clear(&err);
    CHECK(mem_live_open(&err, (int)pid, true) == NULL);
    CHECK_ERR(err.code, ERR_NO_PROCESS);
}

TEST(live_gone_turns_true_when_the_target_dies_after_open) {
    pid_t pid = sleeping_child();
    if (!CHECK(pid > 0) || !CHECK(wait_state(pid, 'S'))) {
        return;
    }
    err_record err;
    err_clear(&err);
    mem *m = mem_live_open(&err, (int)pid, true);
    if (CHECK(m != NULL)) {
        CHECK(!mem_gone(m));
        kill(pid, SIGKILL); /* SIGKILL is pending from here on: gone already */
        CHECK(mem_gone(m));
        CHECK(wait_state(pid, 'Z'));
        CHECK(mem_gone(m));
        mem_close(m);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

TEST(live_thaw_hands_a_target_killed_while_frozen_to_its_waiting_parent) {
    int fds[2];
    if (!CHECK(pipe(fds) == 0)) {
        return;
    }
    pid_t parent = fork();
    if (parent == 0) {
        pid_t child = sleeping_child();
        char reaped = 1;
        if (write(fds[1], &child, sizeof child) != sizeof child ||
            waitpid(child, NULL, 0) != child || write(fds[1], &reaped, 1) != 1) {
            _exit(1);
        }
        _exit(0);
    }
    pid_t child = 0;
    mem *m = NULL;
    if (CHECK(parent > 0) && CHECK(read(fds[0], &child, sizeof child) == sizeof child) &&
        CHECK(wait_state(child, 'S'))) {
        err_record err;
        err_clear(&err);
        m = mem_live_open(&err, (int)child, true);
    }
    if (CHECK(m != NULL) && CHECK_ERR(mem_freeze(m), ERR_OK)) {
        kill(child, SIGKILL);
        CHECK(wait_state(child, 'Z')); /* traced by us: its parent cannot reap it yet */
        CHECK(mem_gone(m));
        mem_thaw(m);
        /* The parent's wait returns now, not when this process exits. */
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        char reaped = 0;
        CHECK(poll(&p, 1, LIVE_TEST_WAIT_MS) == 1 && read(fds[0], &reaped, 1) == 1 && reaped == 1);
    }
    mem_close(m);
    if (child > 0) {
        kill(child, SIGKILL);
    }
    if (parent > 0) {
        kill(parent, SIGKILL);
        waitpid(parent, NULL, 0);
    }
    close(fds[0]);
    close(fds[1]);
}
