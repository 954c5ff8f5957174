# snarl: `make` builds build/snarl; `make check` runs every test;
# `make asan` builds and runs the unit tests under ASan+UBSan;
# `make install PREFIX=...` installs the CLI.

PREFIX ?= /usr/local
BUILD ?= build
CC ?= cc
# Debian's python3 carries python3-pytest; a pyenv shim earlier in PATH may not.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wno-unused-parameter -Wformat=2 -Wvla
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -DSNARL_BUILDING -fvisibility=hidden -fPIC \
              $(WARN) $(CFLAGS) $(EXTRA_CFLAGS)
LDLIBS := -lelf

ENGINE_SRC := $(wildcard src/base/*.c src/mem/*.c src/sym/*.c src/py/*.c src/aio/*.c \
                         src/ana/*.c src/out/*.c) src/engine.c
CLI_SRC := $(wildcard src/cli/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c)
PROBE_SRC := $(wildcard tests/probe/*.c)

ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/obj/%.o)
PROBE_OBJ := $(PROBE_SRC:%.c=$(BUILD)/obj/%.o)

.PHONY: all clean check unit e2e asan install format provision bench

all: $(BUILD)/snarl $(BUILD)/snarl-unit $(BUILD)/snarl-probe

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

unit: $(BUILD)/snarl-unit
	$(BUILD)/snarl-unit

e2e: all
	$(PYTHON) -m pytest -q tests/e2e

# Every test: the C unit suite, the same under ASan+UBSan, then the
# end-to-end matrix over the real interpreters this machine has.
check: all
	$(BUILD)/snarl-unit
	$(MAKE) --no-print-directory asan
	$(PYTHON) -m pytest -q -rs -p no:cacheprovider tests

asan:
	$(MAKE) --no-print-directory BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	        LDFLAGS="-fsanitize=address,undefined" all
	build/asan/snarl-unit

provision:
	sh scripts/provision-pythons.sh

# Speed and memory beside `python3.14 -m asyncio ps` (tests/bench/README.md);
# needs root. e.g. make bench BENCH_ARGS="--sizes 1000,10000 --repeat 3"
bench: $(BUILD)/snarl
	$(PYTHON) tests/bench/bench_tasks.py --snarl $(BUILD)/snarl $(BENCH_ARGS)

install: $(BUILD)/snarl
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/snarl $(DESTDIR)$(PREFIX)/bin/snarl

format:
	clang-format -i $(ENGINE_SRC) $(CLI_SRC) $(UNIT_SRC) $(wildcard src/*/*.h) src/snarl.h

clean:
	rm -rf $(BUILD)

-include $(ENGINE_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(UNIT_OBJ:.o=.d) $(PROBE_OBJ:.o=.d)
