/* A tiny unit-test framework: TEST(name) registers a function at start-up,
 * CHECK* macros record a failed expectation (file, line, values) without
 * stopping the test, and the runner in unit_main.c reports per test. */
#ifndef SNARL_UNIT_H
#define SNARL_UNIT_H

#include <stdbool.h>
#include <stdint.h>

#include "../../src/base/err.h"

typedef void (*unit_fn)(void);

/* Called by TEST() before main runs. */
void unit_register(const char *name, unit_fn fn);

/* Each returns the outcome so a test can stop early when later checks
 * would only repeat the same failure (or touch missing data). */
bool unit_check(bool ok, const char *expr, const char *file, int line);
bool unit_check_eq(long long got, long long want, const char *expr_got, const char *expr_want,
                   const char *file, int line);
bool unit_check_str(const char *got, const char *want, const char *expr_got, const char *file,
                    int line);
bool unit_check_err(err_t got, err_t want, const char *expr, const char *file, int line);

/* Labels the checks that follow (e.g. "3.12", "index 5") in failure lines,
 * until the next call or the end of the test. */
void unit_ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A scratch directory private to this run, created on first use and
 * removed (when empty) at exit; NULL if it cannot be created. */
const char *unit_tmpdir(void);

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void unit_reg_##name(void) {                               \
        unit_register(#name, test_##name);                                                         \
    }                                                                                              \
    static void test_##name(void)

#define CHECK(cond) unit_check((cond) ? true : false, #cond, __FILE__, __LINE__)
#define CHECK_EQ(got, want)                                                                        \
    unit_check_eq((long long)(got), (long long)(want), #got, #want, __FILE__, __LINE__)
#define CHECK_STR(got, want) unit_check_str((got), (want), #got, __FILE__, __LINE__)
#define CHECK_ERR(expr, want) unit_check_err((expr), (want), #expr, __FILE__, __LINE__)

#endif
