/* What the command line's files share: the error printer, the stdio sink,
 * `snarl watch`, the core writer it uses, and the outside programs the CLI
 * runs (Graphviz's dot for --format svg, coredumpctl for --coredumpctl).
 * Only the CLI includes this; the engine is reached through snarl.h. */
#ifndef SNARL_CLI_H
#define SNARL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "../snarl.h"

/* Prints "snarl: MSG" and "hint: HINT" on stderr; returns SNARL_STATUS_ERROR. */
int cli_fail(const char *msg, const char *hint);
/* snarl_sink writing to the FILE * in ctx. */
int cli_sink(void *ctx, const char *data, size_t len);

/* `snarl watch [OPTIONS] -- CMD ARGS...`; argv[0] is "watch". Returns the
 * exit status (cli_watch.c). */
int cli_watch_main(int argc, char **argv);

/* `snarl check --all`: every Python process of this PID namespace, read in
 * parallel; prints the table and the reports, returns the exit status
 * (cli_all.c). */
int cli_all_main(const snarl_options *opt, const snarl_request *req);
/* A process that looks like CPython: its executable is named python* or it
 * maps a libpython*. By name, not by symbols: cheap enough for every process
 * of a host; the engine then says for sure. When /proc will not show its
 * executable or mappings (another user's), its name decides and
 * *unreadable (if given) is set. */
bool cli_is_python(pid_t pid, bool *unreadable);

/* Writes an ELF core of live process pid to path, with every thread frozen
 * while it is written (cli_dump.c). 0, or -1 with a sentence in msg. */
int cli_dump_core(pid_t pid, const char *path, char *msg, size_t cap);

/* True when prog is an executable file in one of PATH's directories. */
bool cli_on_path(const char *prog);
/* Starts `dot -Tsvg` writing to our stdout; returns the FILE * that feeds
 * its input, or NULL with a message printed (cli_tools.c). */
FILE *cli_svg_start(pid_t *pid);
/* Closes dot's input and waits for it; SNARL_STATUS_ERROR if it failed. */
int cli_svg_finish(FILE *in, pid_t pid);
/* Runs `coredumpctl dump -o PATH MATCH` into a new temporary file whose
 * name it writes to path; 0, or SNARL_STATUS_ERROR with a message printed.
 * The caller unlinks the file. */
int cli_coredumpctl_fetch(const char *match, char *path, size_t cap);

#endif
