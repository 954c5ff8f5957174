/* What the front ends read of a host's processes through /proc (whether a
 * process looks like CPython, its command line) and how they print what a
 * process chose to call itself. Shared by `snarl watch` and `snarl check
 * --all`. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Lines of /proc/PID/maps scanned for a Python library; the library is
 * mapped early, so it is among the first few hundred. */
#define CLI_MAPS_LINES_MAX 100000

static const char *cli_basename(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* By name, not by symbols: cheap enough for every process of a host, and
 * the engine then says for sure (a process that looked like Python but is
 * not is reported as not analysed, never silently skipped). */
bool cli_is_python(pid_t pid, bool *unreadable) {
    char path[64], exe[PATH_MAX];
    bool denied = false;
    if (unreadable) {
        *unreadable = false;
    }
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(path, exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        if (strncmp(cli_basename(exe), "python", 6) == 0) {
            return true;
        }
    } else {
        denied = errno == EACCES || errno == EPERM;
    }
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "re");
    if (f) {
        char line[PATH_MAX + 256];
        bool found = false;
        for (int k = 0; !found && k < CLI_MAPS_LINES_MAX && fgets(line, sizeof line, f); k++) {
            char *name = strchr(line, '/');
            if (name) {
                name[strcspn(name, "\n")] = '\0';
                found = strncmp(cli_basename(name), "libpython", 9) == 0;
            }
        }
        fclose(f);
        return found;
    }
    if (!denied) {
        return false;
    }
    /* Another user's process: its name is all /proc shows everyone. */
    char comm[64] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *c = fopen(path, "re");
    bool named = c && fgets(comm, sizeof comm, c) && strncmp(comm, "python", 6) == 0;
    if (c) {
        fclose(c);
    }
    if (named && unreadable) {
        *unreadable = true;
    }
    return named;
}

bool cli_read_stat(pid_t pid, char *state, pid_t *ppid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return false;
    }
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: the state comes
     * after the last ')'. */
    const char *close_paren = strrchr(buf, ')');
    int parent = 0;
    if (!close_paren || sscanf(close_paren + 1, " %c %d", state, &parent) != 2) {
        return false;
    }
    *ppid = (pid_t)parent;
    return true;
}

size_t cli_read_cmdline(pid_t pid, char *buf, size_t cap) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, cap - 1) : -1;
    if (fd >= 0) {
        close(fd);
    }
    size_t len = n > 0 ? (size_t)n : 0;
    /* Drop the final NUL: the list is "a\0b". */
    if (len > 0 && buf[len - 1] == '\0') {
        len--;
    }
    buf[len] = '\0';
    return len;
}

/* U+FFFD for bytes that are not UTF-8: a command line may hold any bytes
 * and the document must stay valid. */
void cli_json_str(FILE *f, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
            i++;
        } else if (c == '\n') {
            fputs("\\n", f);
            i++;
        } else if (c == '\t') {
            fputs("\\t", f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            fputc((int)c, f);
            i++;
        } else {
            size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
            bool ok = len > 0 && i + len <= n && c < 0xf8;
            uint32_t cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
            for (size_t k = 1; ok && k < len; k++) {
                ok = (p[i + k] & 0xc0) == 0x80;
                cp = (cp << 6) | (p[i + k] & 0x3f);
            }
            /* Overlong forms, surrogates and past U+10FFFF are not UTF-8. */
            ok = ok && !(len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) &&
                 !(len == 4 && (cp < 0x10000 || cp > 0x10ffff));
            if (ok) {
                fwrite(p + i, 1, len, f);
                i += len;
            } else {
                fputs("\\ufffd", f);
                i++;
            }
        }
    }
    fputc('"', f);
}

void cli_json_cstr(FILE *f, const char *s) {
    if (!s || !*s) {
        fputs("null", f);
    } else {
        cli_json_str(f, s, strlen(s));
    }
}

void cli_json_args(FILE *f, const char *args, size_t len) {
    fputc('[', f);
    for (size_t at = 0, k = 0; at < len; k++) {
        size_t n = strnlen(args + at, len - at);
        fputs(k ? "," : "", f);
        cli_json_str(f, args + at, n);
        at += n + 1;
    }
    fputc(']', f);
}

void cli_text_args(FILE *f, const char *args, size_t len) {
    /* Escaped: an argument may hold up to the whole line's bytes, each
     * written as at most four. */
    char clean[CLI_CMDLINE_MAX * 4 + 1];
    for (size_t at = 0, k = 0; at < len; k++) {
        size_t n = strnlen(args + at, len - at);
        snarl_escape(clean, sizeof clean, args + at, n);
        fprintf(f, "%s%s", k ? " " : "", clean);
        at += n + 1;
    }
}

/* A document the engine wrote, on one line: it is compact, and JSON strings
 * hold no raw newline, so dropping newlines changes nothing but the
 * whitespace. "null" when there is none. */
void cli_json_embed(FILE *f, const char *doc, size_t len) {
    while (len > 0 && (doc[len - 1] == '\n' || doc[len - 1] == ' ')) {
        len--;
    }
    if (!doc || len == 0) {
        fputs("null", f);
        return;
    }
    for (size_t k = 0; k < len;) {
        const char *nl = memchr(doc + k, '\n', len - k);
        size_t span = nl ? (size_t)(nl - (doc + k)) : len - k;
        fwrite(doc + k, 1, span, f);
        k += span + (nl != NULL);
    }
}
