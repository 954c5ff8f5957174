/* The unit-test runner: runs every registered test (or those whose name
 * contains one of the command-line arguments), prints one line per failed
 * check and ends with "N passed, N failed" counted in test functions. */
#include "unit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Registered tests; the suite has about seventy, so this leaves ample room. */
#define UNIT_TESTS_MAX 512
/* A context label is a version or an index, or a one-sentence error. */
#define UNIT_CTX_LEN 160

typedef struct unit_test {
    const char *name;
    unit_fn fn;
} unit_test;

static unit_test unit_tests[UNIT_TESTS_MAX];
static size_t unit_ntests;
static bool unit_overflow;
static const char *unit_current;
static bool unit_current_failed;
static char unit_ctx_buf[UNIT_CTX_LEN];
static char unit_dir[64];

void unit_register(const char *name, unit_fn fn) {
    if (unit_ntests == UNIT_TESTS_MAX) {
        unit_overflow = true;
        return;
    }
    unit_tests[unit_ntests].name = name;
    unit_tests[unit_ntests].fn = fn;
    unit_ntests++;
}

void unit_ctx(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(unit_ctx_buf, sizeof unit_ctx_buf, fmt, ap);
    va_end(ap);
}

static void unit_fail_line(const char *file, int line) {
    unit_current_failed = true;
    printf("FAIL %s (%s:%d)", unit_current ? unit_current : "?", file, line);
    if (unit_ctx_buf[0]) {
        printf(" [%s]", unit_ctx_buf);
    }
    printf(": ");
}

bool unit_check(bool ok, const char *expr, const char *file, int line) {
    if (!ok) {
        unit_fail_line(file, line);
        printf("%s\n", expr);
    }
    return ok;
}

bool unit_check_eq(long long got, long long want, const char *expr_got, const char *expr_want,
                   const char *file, int line) {
    if (got != want) {
        unit_fail_line(file, line);
        printf("%s == %s: got %lld (0x%llx), want %lld (0x%llx)\n", expr_got, expr_want, got,
               (unsigned long long)got, want, (unsigned long long)want);
    }
    return got == want;
}

bool unit_check_str(const char *got, const char *want, const char *expr_got, const char *file,
                    int line) {
    bool ok = got && want ? strcmp(got, want) == 0 : got == want;
    if (!ok) {
        unit_fail_line(file, line);
        printf("%s: got \"%s\", want \"%s\"\n", expr_got, got ? got : "(null)",
               want ? want : "(null)");
    }
    return ok;
}

bool unit_check_err(err_t got, err_t want, const char *expr, const char *file, int line) {
    if (got != want) {
        unit_fail_line(file, line);
        printf("%s: got ERR_%s, want ERR_%s\n", expr, err_name(got), err_name(want));
    }
    return got == want;
}

static void unit_rmdir(void) {
    if (unit_dir[0]) {
        rmdir(unit_dir);
    }
}

const char *unit_tmpdir(void) {
    if (!unit_dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(unit_dir, sizeof unit_dir, "%s/snarl-unit-XXXXXX",
                 base && base[0] && strlen(base) < 40 ? base : "/tmp");
        if (!mkdtemp(unit_dir)) {
            unit_dir[0] = '\0';
            return NULL;
        }
        atexit(unit_rmdir);
    }
    return unit_dir;
}

static bool unit_selected(const char *name, int argc, char **argv) {
    if (argc < 2) {
        return true;
    }
    for (int i = 1; i < argc; i++) {
        if (strstr(name, argv[i])) {
            return true;
        }
    }
    return false;
}

int main(int argc, char **argv) {
    if (unit_overflow) {
        fprintf(stderr, "more than %d tests registered; raise UNIT_TESTS_MAX\n", UNIT_TESTS_MAX);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t passed = 0, failed = 0;
    for (size_t i = 0; i < unit_ntests; i++) {
        if (!unit_selected(unit_tests[i].name, argc, argv)) {
            continue;
        }
        unit_current = unit_tests[i].name;
        unit_current_failed = false;
        unit_ctx_buf[0] = '\0';
        unit_tests[i].fn();
        if (unit_current_failed) {
            failed++;
        } else {
            passed++;
        }
    }
    unit_current = NULL;
    if (passed + failed == 0 && argc > 1) {
        fprintf(stderr, "no test name contains the given filter\n");
    }
    printf("%zu passed, %zu failed\n", passed, failed);
    return failed ? 1 : passed ? 0 : 2;
}
