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

/* Bytes of /proc/PID/cmdline shown and kept in a report. */
#define CLI_CMDLINE_MAX 4096
/* A process that looks like CPython: its executable is named python* (a
 * venv's python, python3.14d) or it maps a libpython* (embedded
 * interpreters, uWSGI, --enable-shared builds). When /proc will not show
 * another user's executable or mappings, its name decides and *unreadable
 * (if given) is set (cli_proc.c). */
bool cli_is_python(pid_t pid, bool *unreadable);
/* A process's state letter (R, S, D, Z...) and parent from
 * /proc/PID/stat; false when it is gone. */
bool cli_read_stat(pid_t pid, char *state, pid_t *ppid);
/* Reads the NUL-separated arguments of pid into buf (cap bytes, NUL
 * terminated, the final separator dropped); returns their length, 0 when
 * /proc has none. */
size_t cli_read_cmdline(pid_t pid, char *buf, size_t cap);
/* JSON strings of what a process calls itself: escapes, U+FFFD for bytes
 * that are not UTF-8. cstr: "null" for NULL or empty. */
void cli_json_str(FILE *f, const char *s, size_t n);
void cli_json_cstr(FILE *f, const char *s);
/* A NUL-separated argument list as a JSON array, and as a shell would show
 * it (each argument escaped, snarl_escape). */
void cli_json_args(FILE *f, const char *args, size_t len);
void cli_text_args(FILE *f, const char *args, size_t len);
/* Copies a JSON document the engine wrote onto the current line; "null"
 * when len is 0. */
void cli_json_embed(FILE *f, const char *doc, size_t len);

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
