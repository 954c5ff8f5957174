# snarl: `make` builds build/snarl; `make check` runs every test;
# `make asan` builds and runs the unit tests under ASan+UBSan;
# `make fuzz` and `make faults` fuzz and fault-inject (tests/fuzz/README.md);
# `make install PREFIX=... [DESTDIR=...]` installs the CLI, its man page,
# shell completion, the gdb/lldb extension and the pytest plugin;
# `make deb` builds the Debian package from that install (debian/).

PREFIX ?= /usr/local
BUILD ?= build
CC ?= cc
# Debian's python3 carries python3-pytest; a pyenv shim earlier in PATH may not.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wno-unused-parameter -Wformat=2 -Wvla
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -DSNARL_BUILDING -fvisibility=hidden -fPIC \
              $(WARN) $(CPPFLAGS) $(CFLAGS) $(EXTRA_CFLAGS)
# libelf reads ELF files; zstd, lzma and lz4 unpack systemd-coredump's cores.
LDLIBS := -lelf -lzstd -llzma -llz4

ENGINE_SRC := $(wildcard src/base/*.c src/mem/*.c src/sym/*.c src/py/*.c src/aio/*.c \
                         src/ana/*.c src/out/*.c) src/engine.c
CLI_SRC := $(wildcard src/cli/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c)
PROBE_SRC := $(wildcard tests/probe/*.c)
# Replayable memory images (tests/fuzz/): the recorder, the fault-injection
# tool and the fuzz targets share the loader.
FZ_OBJ := $(BUILD)/obj/tests/fuzz/fz_image.o

ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/obj/%.o)
PROBE_OBJ := $(PROBE_SRC:%.c=$(BUILD)/obj/%.o)

.PHONY: all clean check unit e2e asan install format provision bench fuzz fuzz-build fuzz-ci \
        fuzz-regress fuzz-afl faults

all: $(BUILD)/snarl $(BUILD)/snarl-unit $(BUILD)/snarl-probe $(BUILD)/snarl-record \
     $(BUILD)/snarl-faults $(BUILD)/snarl-dying

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC $<"; $(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libsnarl.a: $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/snarl: $(CLI_OBJ) $(BUILD)/libsnarl.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS) $(LDFLAGS)

$(BUILD)/snarl-unit: $(UNIT_OBJ) $(BUILD)/libsnarl.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS) $(LDFLAGS)

# Test tool for tests/e2e/test_readers.py: the object readers on real targets.
$(BUILD)/snarl-probe: $(PROBE_OBJ) $(BUILD)/libsnarl.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS) $(LDFLAGS)

# Test tools for tests/fuzz/: a core to a replayable image; every read and
# allocation of an image's analysis failed in turn.
$(BUILD)/snarl-record: $(BUILD)/obj/tests/fuzz/record.o $(FZ_OBJ) $(BUILD)/libsnarl.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS) $(LDFLAGS)

# Test build of the command line for tests/e2e/test_target_safety.py: the
# same program, with tests/dying/'s hook that kills the target at a chosen
# point of the live backend. Never installed.
$(BUILD)/snarl-dying: $(CLI_OBJ) $(BUILD)/obj/tests/dying/dying.o $(BUILD)/libsnarl.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS) $(LDFLAGS)

$(BUILD)/snarl-faults: $(BUILD)/obj/tests/fuzz/faults.o $(FZ_OBJ) $(BUILD)/libsnarl.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS) $(LDFLAGS)

# The gdb and lldb front ends (plugin/): a limited-API (abi3) extension that
# loads in whichever CPython 3.11+ the debugger embeds, and the command
# scripts. Skipped, with a message, when there are no Python headers.
PY_INCLUDE ?= $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)
PLUGIN := $(BUILD)/_snarl.abi3.so
PLUGIN_PY := plugin/snarl_common.py plugin/snarl_gdb.py plugin/snarl_lldb.py
# The scripts in share/, the extension (architecture-dependent) in lib/.
SHAREDIR = $(PREFIX)/share/snarl
LIBDIR = $(PREFIX)/lib/snarl

.PHONY: plugin install-plugin
all: plugin
install: install-plugin

ifneq ($(wildcard $(PY_INCLUDE)/Python.h),)
plugin: $(PLUGIN)

install-plugin: $(PLUGIN)
	install -d $(DESTDIR)$(SHAREDIR)
	install -m 644 $(PLUGIN_PY) $(DESTDIR)$(SHAREDIR)/
	install -d $(DESTDIR)$(LIBDIR)
	install -m 644 $(PLUGIN) $(DESTDIR)$(LIBDIR)/
else
plugin install-plugin:
	@echo "  skipping the gdb/lldb extension: no Python.h in '$(PY_INCLUDE)' (install python3-dev or set PY_INCLUDE)"
endif

$(BUILD)/obj/plugin/snarl_ext.o: plugin/snarl_ext.c
	@mkdir -p $(dir $@)
	@echo "  CC $<"; $(CC) $(ALL_CFLAGS) -isystem $(PY_INCLUDE) -MMD -MP -c $< -o $@

# The engine's symbols stay inside the module (--exclude-libs): only
# PyInit__snarl is exported into the debugger.
$(PLUGIN): $(BUILD)/obj/plugin/snarl_ext.o $(BUILD)/libsnarl.a
	$(CC) $(ALL_CFLAGS) -shared -Wl,--exclude-libs,ALL -o $@ $^ $(LDLIBS) $(LDFLAGS)

# `snarl check` in gdb (and lldb) beside the CLI on one 100,000-task core
# (tests/bench/README.md); needs root, gdb and gcore.
# e.g. make bench-gdb BENCH_GDB_ARGS="--repeat 3 --lldb"
.PHONY: bench-gdb
bench-gdb: $(BUILD)/snarl plugin
	$(PYTHON) tests/bench/bench_gdb.py --snarl $(BUILD)/snarl $(BENCH_GDB_ARGS)

unit: $(BUILD)/snarl-unit
	$(BUILD)/snarl-unit

e2e: all
	$(PYTHON) -m pytest -q tests/e2e

# Every test: the C unit suite, the same under ASan+UBSan, the fuzz
# regression inputs and a short fuzz pass, fault injection, then the
# end-to-end matrix over the real interpreters this machine has.
check: all
	$(BUILD)/snarl-unit
	$(MAKE) --no-print-directory asan
	$(MAKE) --no-print-directory fuzz-ci
	$(MAKE) --no-print-directory faults
	$(PYTHON) -m pytest -q -rs -p no:cacheprovider tests

ASAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

asan:
	$(MAKE) --no-print-directory BUILD=build/asan CFLAGS="$(ASAN_CFLAGS)" \
	        LDFLAGS="-fsanitize=address,undefined" all
	build/asan/snarl-unit

provision:
	sh scripts/provision-pythons.sh

# Fuzzing (tests/fuzz/README.md): libFuzzer targets built with clang, ASan
# and UBSan into build/fuzz; FUZZ_TIME seconds per target.
FUZZ_CC ?= clang-14
FUZZ_TARGETS := core sym engine
FUZZ_TIME ?= 60
FUZZ_CI_TIME ?= 20
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

fuzz-build:
	$(MAKE) --no-print-directory BUILD=build/fuzz CC=$(FUZZ_CC) \
	        CFLAGS="-O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link" \
	        LDFLAGS="$(FUZZ_SAN) -fsanitize=fuzzer" $(FUZZ_TARGETS:%=build/fuzz/fuzz-%)

$(BUILD)/fuzz-%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(FZ_OBJ) $(BUILD)/libsnarl.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS) $(LDFLAGS)

# Keep the targets' objects (make deletes what a pattern chain makes).
.SECONDARY: $(FUZZ_TARGETS:%=$(BUILD)/obj/tests/fuzz/fuzz_%.o)

# Every committed seed and regression input, run once through each target.
fuzz-regress: fuzz-build
	sh tests/fuzz/run.sh regress

fuzz: fuzz-build
	sh tests/fuzz/run.sh fuzz $(FUZZ_TIME)

# The same core and sym targets under AFL++ (its mutations and scheduling,
# beside libFuzzer's); AFL++ takes inputs up to 1 MB, so not the engine's
# images. FUZZ_TIME seconds per target; findings in build/afl/out/TARGET.
AFL_TARGETS := core sym

fuzz-afl:
	$(MAKE) --no-print-directory BUILD=build/afl CC=afl-clang-fast CFLAGS="-O1 -g $(FUZZ_SAN)" \
	        LDFLAGS="$(FUZZ_SAN) -fsanitize=fuzzer" $(AFL_TARGETS:%=build/afl/fuzz-%)
	sh tests/fuzz/run.sh afl $(FUZZ_TIME) $(AFL_TARGETS)

# What `make check` runs: the regression inputs, then a short pass per target.
fuzz-ci: fuzz-build
	sh tests/fuzz/run.sh regress
	sh tests/fuzz/run.sh fuzz $(FUZZ_CI_TIME)

# Every read, then every allocation, of recorded analyses failed in turn,
# under ASan and UBSan.
faults:
	$(MAKE) --no-print-directory BUILD=build/asan CFLAGS="$(ASAN_CFLAGS)" \
	        LDFLAGS="-fsanitize=address,undefined" build/asan/snarl-faults
	sh tests/fuzz/run.sh faults build/asan/snarl-faults

# Speed and memory beside `python3.14 -m asyncio ps` (tests/bench/README.md);
# needs root. e.g. make bench BENCH_ARGS="--quick" (a few minutes)
bench: $(BUILD)/snarl
	$(PYTHON) tests/bench/bench_tasks.py --snarl $(BUILD)/snarl $(BENCH_ARGS)

# Where `make install` puts what is not the CLI. The defaults are Debian's
# (and the package's, with PREFIX=/usr): Debian's python3 reads
# /usr/lib/python3/dist-packages (every version) and, for /usr/local,
# /usr/local/lib/python3.X/dist-packages (this PYTHON's version); its gdb
# reads /etc/gdb/gdbinit.d (GDBINITDIR= skips the gdb auto-load snippet, e.g.
# for a PREFIX in a home directory); zsh's fpath has vendor-completions for
# packages and /usr/local/share/zsh/site-functions for the rest.
DATADIR = $(PREFIX)/share
DOCDIR = $(DATADIR)/doc/snarl
MANDIR = $(DATADIR)/man
BASHCOMPDIR = $(DATADIR)/bash-completion/completions
ZSHCOMPDIR = $(if $(filter /usr,$(PREFIX)),$(DATADIR)/zsh/vendor-completions,$(DATADIR)/zsh/site-functions)
PYVERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PYTHONDIR = $(if $(filter /usr,$(PREFIX)),$(PREFIX)/lib/python3,$(PREFIX)/lib/python$(PYVERSION))/dist-packages
GDBINITDIR = /etc/gdb/gdbinit.d
DOCS := docs/json.md docs/snarl-1.schema.json docs/snarl-watch-1.schema.json docs/snarl-all-1.schema.json

.PHONY: man install-man install-completion install-pytest install-gdbinit deb FORCE

# snarl(1), from its scdoc source; the paths it names are this install's
# (so it is made again each time: PREFIX may have changed).
man: $(BUILD)/snarl.1

$(BUILD)/snarl.1: docs/snarl.1.scd FORCE
	@mkdir -p $(dir $@)
	sed -e 's|@DOCDIR@|$(DOCDIR)|g' -e 's|@SHAREDIR@|$(SHAREDIR)|g' \
	    -e 's|@GDBINITDIR@|$(or $(GDBINITDIR),/etc/gdb/gdbinit.d)|g' $< | scdoc > $@

install: $(BUILD)/snarl install-man install-completion install-pytest install-gdbinit
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/snarl $(DESTDIR)$(PREFIX)/bin/snarl
	install -d $(DESTDIR)$(DOCDIR)
	install -m 644 $(DOCS) $(DESTDIR)$(DOCDIR)/

ifneq ($(shell command -v scdoc),)
install-man: $(BUILD)/snarl.1
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m 644 $(BUILD)/snarl.1 $(DESTDIR)$(MANDIR)/man1/snarl.1
else
install-man:
	@echo "  skipping the man page: no scdoc (install scdoc)"
endif

install-completion:
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	install -m 644 completions/snarl.bash $(DESTDIR)$(BASHCOMPDIR)/snarl
	install -m 644 completions/_snarl $(DESTDIR)$(ZSHCOMPDIR)/_snarl

# The pytest plugin as the distribution plugin/pyproject.toml describes
# (its pytest11 entry point makes pytest load it): its wheel, built by
# setuptools' PEP 517 backend as pip would build it (from a copy in
# $(BUILD), so nothing lands in plugin/), then unpacked into PYTHONDIR,
# which is what installing a pure-Python wheel is (PEP 427). Needs the
# system's setuptools and wheel; no index is asked.
install-pytest:
	@if $(PYTHON) -c 'import setuptools, wheel' 2>/dev/null; then \
	    rm -rf $(BUILD)/pytest-dist && mkdir -p $(BUILD)/pytest-dist/src && \
	    cp plugin/pyproject.toml plugin/pytest_snarl.py $(BUILD)/pytest-dist/src/ && \
	    echo "  WHEEL pytest-snarl" && \
	    (cd $(BUILD)/pytest-dist/src && $(PYTHON) -c 'import sys; from setuptools import build_meta; \
	        build_meta.build_wheel(sys.argv[1])' .. >../log 2>&1) || \
	        { cat $(BUILD)/pytest-dist/log >&2; exit 1; }; \
	    install -d $(DESTDIR)$(PYTHONDIR) && \
	    $(PYTHON) -m zipfile -e $(BUILD)/pytest-dist/pytest_snarl-*.whl $(DESTDIR)$(PYTHONDIR) && \
	    chmod -R u=rwX,go=rX $(DESTDIR)$(PYTHONDIR)/pytest_snarl* && \
	    rm -rf $(BUILD)/pytest-dist; \
	else \
	    echo "  skipping the pytest plugin: no setuptools and wheel for $(PYTHON) (install python3-setuptools python3-wheel)"; \
	fi

install-gdbinit:
ifneq ($(GDBINITDIR),)
	install -d $(DESTDIR)$(GDBINITDIR) $(BUILD)
	sed 's|@SHAREDIR@|$(SHAREDIR)|g' plugin/gdbinit-snarl.py.in > $(BUILD)/gdbinit-snarl.py
	install -m 644 $(BUILD)/gdbinit-snarl.py $(DESTDIR)$(GDBINITDIR)/snarl.py
endif

# The Debian package, by dpkg-buildpackage and debhelper (debian/), built in
# a copy of this tree so that nothing lands beside it; it is left in
# $(BUILD)/ (the dbgsym package and .changes stay in $(BUILD)/deb/).
# DEB_JOBS: dpkg-buildpackage's parallelism (default: the machine's cores).
DEB_JOBS ?= -J
DEB_UNSET := MAKEFLAGS MFLAGS MAKEOVERRIDES MAKELEVEL BUILD PREFIX DESTDIR CC CFLAGS CPPFLAGS \
             LDFLAGS EXTRA_CFLAGS PYTHON PY_INCLUDE GDBINITDIR
deb:
	@command -v dpkg-buildpackage >/dev/null || { echo "make: 'make deb' needs dpkg-dev and debhelper" >&2; exit 1; }
	rm -rf $(BUILD)/deb $(BUILD)/snarl_*.deb
	mkdir -p $(BUILD)/deb/snarl
	tar -c --exclude=./build --exclude='./$(BUILD)' --exclude=./.git --exclude=__pycache__ \
	    --exclude=./.pytest_cache -f - . | tar -x -C $(BUILD)/deb/snarl
	@# The package's own make must not inherit this one's variables: make
	@# exports those set on its command line (BUILD=..., PREFIX=...).
	cd $(BUILD)/deb/snarl && env $(DEB_UNSET:%=-u %) dpkg-buildpackage -b -us -uc $(DEB_JOBS)
	mv $(BUILD)/deb/snarl_*.deb $(BUILD)/
	rm -rf $(BUILD)/deb/snarl
	@ls $(BUILD)/snarl_*.deb

format:
	clang-format -i $(ENGINE_SRC) $(CLI_SRC) $(UNIT_SRC) $(wildcard src/*/*.h) src/snarl.h \
	    plugin/snarl_ext.c $(wildcard tests/fuzz/*.[ch] tests/dying/*.c)

clean:
	rm -rf $(BUILD)

-include $(ENGINE_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(UNIT_OBJ:.o=.d) $(PROBE_OBJ:.o=.d) \
         $(BUILD)/obj/plugin/snarl_ext.d
-include $(wildcard $(BUILD)/obj/tests/fuzz/*.d $(BUILD)/obj/tests/dying/*.d)
