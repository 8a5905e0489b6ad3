# ksms - build, test and install.
#   make                 build ksms/core.so for Lua 5.4 (build/lua5.4/)
#   make LUA=luajit      build it for LuaJIT 2.1 (build/luajit/); likewise
#                        LUA=lua5.1, lua5.2, lua5.3 (build/$(LUA)/)
#   make test            install missing Debian packages (as root), build for
#                        every interpreter, run every spec under Lua 5.4 and
#                        LuaJIT and the representative subset (tools/run-specs.sh)
#                        under 5.1, 5.2 and 5.3, then the sanitizer and valgrind
#                        runs (5.4 and LuaJIT) and the fuzzing smoke pass
#   make specs           every spec under $(LUA) (SPECS=subset: the subset)
#   make demo            the main job against the bundled fake provider
#   make demo-fleet      a OneShot fleet (Redis, three binders, kill -9) on 127.0.0.1
#   make asan            the whole suite with AddressSanitizer + UBSan
#   make valgrind        the codec, HTTP and OneShot stress scripts under
#                        valgrind, leaks are errors
#   make fuzz            every libFuzzer harness and Lua mutation loop for
#                        FUZZ_SECONDS (60) each, one after another (fuzz/README.md)
#   make fuzz-smoke      the regressions and a few seconds of each (part of make test)
#   make bench           the benchmarks under bench/ (LUA=luajit for LuaJIT)
#   make docs            the LDoc API reference into docs/api/ (generated, not
#                        committed); config.ld says what it covers
#   make install         PREFIX=/usr/local, DESTDIR= honoured; also bin/ksms
#                        (shebang: $(LUA)) into $(PREFIX)/bin, its bash and
#                        zsh completion and its man page under $(PREFIX)/share

LUA       ?= lua5.4
# The interpreters ksms builds for, each with its pkg-config package (the
# headers) and its ABI (the lib/lua/X.Y and share/lua/X.Y directories).
KNOWN_LUAS := lua5.1 lua5.2 lua5.3 lua5.4 luajit
ifeq ($(filter $(LUA),$(KNOWN_LUAS)),)
$(error LUA=$(LUA) is not an interpreter ksms knows; use one of: $(KNOWN_LUAS))
endif
LUA_PC    ?= $(if $(filter luajit,$(LUA)),luajit,$(LUA))
LUA_ABI   ?= $(if $(filter luajit,$(LUA)),5.1,$(patsubst lua%,%,$(LUA)))
PREFIX    ?= /usr/local
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_ABI)
BINDIR    ?= $(PREFIX)/bin
BUILD     ?= build/$(LUA)
CC        ?= cc

PKGS      := zlib libcrypto libcurl
OPTFLAGS  ?= -O2 -g
WARNFLAGS := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
ALL_CFLAGS = -std=gnu11 -fPIC -fvisibility=hidden $(OPTFLAGS) $(WARNFLAGS) \
             $(shell pkg-config --cflags $(LUA_PC) $(PKGS)) $(CFLAGS)
ALL_LDFLAGS = -shared $(LDFLAGS)
# hiredis (the RESP reader, resp.c): through pkg-config when it has a .pc.
HIREDIS_LIBS := $(shell pkg-config --libs hiredis 2>/dev/null || echo -lhiredis)
LIBS      = $(shell pkg-config --libs $(PKGS)) $(HIREDIS_LIBS)

SRCS := $(wildcard csrc/*.c)
OBJS := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRCS))
SO   := $(BUILD)/ksms/core.so

LUA_SRC := $(shell find lua -name '*.lua' 2>/dev/null)

.PHONY: all build test deps specs asan asan-run valgrind bench bench-codec bench-http bench-oneshot bench-outbox bench-fleet demo install uninstall clean tables docs \
        fuzz fuzz-smoke fuzz-build fuzz-corpus

all: $(SO)
build: $(SO)

$(BUILD)/obj/%.o: csrc/%.c csrc/*.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LIBS)

deps:
	@sh tools/install-deps.sh

# Every spec under LuaJIT, and under Lua 5.4 all but the two nginx specs
# that run wholly inside nginx (build/luajit either way); under Lua 5.1, 5.2 and 5.3 the subset
# of tools/run-specs.sh (~35 s each: the C core and codecs, its HTTP client,
# every provider's client and the OneShot client and session against the
# fakes, events, metrics, the logger, the CLI); then the sanitizer passes
# (5.4 and LuaJIT, all but the specs whose ksms runs in nginx or a rock
# build, which never load the sanitized core), valgrind and the fuzz smoke.
SUBSET_LUAS := lua5.1 lua5.2 lua5.3
test: deps
	@for interp in lua5.4 luajit $(SUBSET_LUAS); do \
	  $(MAKE) --no-print-directory LUA=$$interp build || exit 1; done
	@rm -rf build/results && mkdir -p build/results
	@status=0; \
	sh tools/run-specs.sh lua5.4 build/lua5.4 build/results/lua5.4.log nonginx || status=1; \
	sh tools/run-specs.sh luajit build/luajit build/results/luajit.log || status=1; \
	for interp in $(SUBSET_LUAS); do \
	  sh tools/run-specs.sh $$interp build/$$interp build/results/$$interp-subset.log subset || status=1; \
	done; \
	$(MAKE) --no-print-directory asan-run || status=1; \
	$(MAKE) --no-print-directory valgrind || status=1; \
	FUZZ_RESULTS=build/results/fuzz.log $(MAKE) --no-print-directory fuzz-smoke || status=1; \
	sh tools/summary.sh build/results; \
	exit $$status

specs: $(SO)
	@sh tools/run-specs.sh $(LUA) $(BUILD) build/results-$(LUA).log $(SPECS)

# AddressSanitizer + UndefinedBehaviorSanitizer: the interpreter is not
# instrumented, so the runtime is preloaded.
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
asan: deps asan-run
asan-run:
	@mkdir -p build/results
	@status=0; for interp in lua5.4 luajit; do \
	  $(MAKE) --no-print-directory LUA=$$interp BUILD=build/asan-$$interp OPTFLAGS="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" build || exit 1; \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  sh tools/run-specs.sh $$interp build/asan-$$interp build/results/asan-$$interp.log sanitized || status=1; \
	done; exit $$status

valgrind: $(SO)
	@$(MAKE) --no-print-directory LUA=lua5.4 build
	@echo "valgrind: codec stress"
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/?.so;;" \
	 valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
	   --show-leak-kinds=definite,indirect --error-exitcode=99 \
	   lua5.4 spec/stress/codec_stress.lua
	@echo "valgrind: http stress"
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/?.so;;" \
	 valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
	   --show-leak-kinds=definite,indirect --error-exitcode=99 \
	   lua5.4 spec/stress/http_stress.lua
	@echo "valgrind: oneshot stress"
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/?.so;;" \
	 valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
	   --show-leak-kinds=definite,indirect --error-exitcode=99 \
	   lua5.4 spec/stress/oneshot_stress.lua

# Fuzzing (fuzz/README.md). The harnesses link the C sources, built with
# clang's libFuzzer and the sanitizers, and liblua5.4; the Lua loops run
# over the ASan build that asan-run uses.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_CFLAGS   = -std=gnu11 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fsanitize-recover=undefined $(shell pkg-config --cflags lua5.4 $(PKGS))
FUZZ_LIBS     = $(shell pkg-config --libs lua5.4) $(LIBS) -ldl -lm
FUZZ_OBJS    := $(patsubst csrc/%.c,$(FUZZ_BUILD)/obj/%.o,$(SRCS))
FUZZ_BINS    := $(patsubst fuzz/fuzz_%.c,$(FUZZ_BUILD)/fuzz_%,$(wildcard fuzz/fuzz_*.c))
FUZZ_LUA_ENV := LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="build/lua5.4/?.so;;"

$(FUZZ_BUILD)/obj/%.o: csrc/%.c csrc/*.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wno-constant-conversion -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/*.h $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Icsrc -o $@ $< $(FUZZ_OBJS) $(FUZZ_LIBS)

.SECONDARY: $(FUZZ_OBJS)
fuzz-build: $(FUZZ_BINS)
	@$(MAKE) --no-print-directory LUA=lua5.4 build
	@for interp in lua5.4 luajit; do \
	  $(MAKE) --no-print-directory LUA=$$interp BUILD=build/asan-$$interp OPTFLAGS="$(ASAN_FLAGS)" \
	    LDFLAGS="-fsanitize=address,undefined" build || exit 1; done

fuzz-corpus: fuzz-build
	@$(FUZZ_LUA_ENV) lua5.4 fuzz/make_corpus.lua $(FUZZ_BUILD)/corpus

fuzz: deps fuzz-corpus
	@sh fuzz/run.sh long $(FUZZ_SECONDS)

fuzz-smoke: fuzz-corpus
	@sh fuzz/run.sh smoke 2

bench: bench-codec bench-http bench-oneshot bench-outbox bench-fleet bench-fleet-nginx

bench-codec: $(SO)
	@$(MAKE) --no-print-directory -C bench
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" $(LUA) bench/codec.lua

bench-oneshot: $(SO)
	@$(MAKE) --no-print-directory -C bench
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" $(LUA) bench/oneshot.lua

bench-http: $(SO)
	@$(MAKE) --no-print-directory -C bench
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" $(LUA) bench/http.lua

# BENCH_QUEUED=100000 for a shorter run (the default queues a million).
bench-outbox: $(SO)
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" BENCH_LUA=$(LUA) $(LUA) bench/outbox.lua

# Speed 1000 through ksms.oneshot.fleet: a real redis-server, the fake
# OneShot server, three binder and three producer processes (redis-server).
# BENCH_MESSAGES (10,000), BENCH_BINDERS (3), BENCH_BATCH (1), BENCH_REPORTS=0.
bench-fleet: $(SO)
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" BENCH_LUA=$(LUA) $(LUA) bench/fleet.lua

# Enqueue from an nginx handler into Redis, beside the same handler without
# ksms (bench/fleet_nginx.lua; nginx runs LuaJIT: the core is built for it).
.PHONY: bench-fleet-nginx
bench-fleet-nginx: $(SO)
	@$(MAKE) --no-print-directory -C bench
	@$(MAKE) --no-print-directory LUA=luajit build
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" $(LUA) bench/fleet_nginx.lua

# deps first: on a fresh machine nothing can compile before the packages are in.
demo: deps
	@$(MAKE) --no-print-directory build
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" $(LUA) examples/demo.lua

# make demo-fleet: a OneShot fleet on 127.0.0.1 (docs/fleet.md): a real
# redis-server, the fake OneShot server, three binder processes and three
# producers; the holder is killed with kill -9 mid-run, a summary printed
# and checked (examples/fleet/demo.lua; ~10 s).
.PHONY: demo-fleet
demo-fleet: deps
	@$(MAKE) --no-print-directory build
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" $(LUA) examples/fleet/demo.lua

# The API reference from the doc comments (config.ld): docs/api/index.html.
docs:
	@command -v ldoc >/dev/null || { echo "ksms: make docs needs ldoc (Debian: lua-ldoc; make deps)" >&2; exit 1; }
	@rm -rf docs/api
	@ldoc -q . && echo "ksms: docs/api/index.html"

# make demo-nginx: the bundled fake provider and a real nginx with
# examples/nginx/ on 127.0.0.1, one SMS sent through its handler with curl,
# the answer and the metrics printed, both stopped (examples/nginx/demo.sh;
# KSMS_DEMO_PORT, default 8080). nginx runs LuaJIT: the core is built for it.
.PHONY: demo-nginx
demo-nginx: deps
	@$(MAKE) --no-print-directory LUA=luajit build
	@sh examples/nginx/demo.sh

# Regenerates csrc/text_tables.h (CP949 / EUC-KR coverage) from glibc iconv.
tables:
	@mkdir -p build
	$(CC) -std=gnu11 -O2 -Wall -Wextra -o build/gen_text_tables tools/gen_text_tables.c
	build/gen_text_tables csrc/text_tables.h

# bin/ksms is installed with the interpreter $(LUA) in its shebang and the
# module directories written in, so it runs without LUA_PATH under any PREFIX.
# The bash/zsh completion and the man page are generated by the command
# itself from the tables of its --help (ksms completion bash|zsh, ksms man).
KSMS_HERE = LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/?.so;;" $(LUA) bin/ksms
install: $(SO)
	install -d $(DESTDIR)$(LUA_LIBDIR)/ksms
	install -m 0755 $(SO) $(DESTDIR)$(LUA_LIBDIR)/ksms/core.so
	cd lua && for f in $$(find . -name '*.lua'); do \
	  install -d $(DESTDIR)$(LUA_SHAREDIR)/$$(dirname $$f); \
	  install -m 0644 $$f $(DESTDIR)$(LUA_SHAREDIR)/$$f; done
	install -d $(DESTDIR)$(BINDIR)
	sed -e '1s|.*|#!/usr/bin/env $(LUA)|' \
	    -e 's|^local INSTALLED = nil$$|local INSTALLED = { share = "$(LUA_SHAREDIR)", lib = "$(LUA_LIBDIR)" }|' \
	    bin/ksms > $(DESTDIR)$(BINDIR)/ksms.tmp
	chmod 0755 $(DESTDIR)$(BINDIR)/ksms.tmp
	mv -f $(DESTDIR)$(BINDIR)/ksms.tmp $(DESTDIR)$(BINDIR)/ksms
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
	  $(DESTDIR)$(PREFIX)/share/man/man1
	$(KSMS_HERE) completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/ksms
	$(KSMS_HERE) completion zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_ksms
	$(KSMS_HERE) man > $(DESTDIR)$(PREFIX)/share/man/man1/ksms.1

uninstall:
	rm -rf $(DESTDIR)$(LUA_LIBDIR)/ksms $(DESTDIR)$(LUA_SHAREDIR)/ksms $(DESTDIR)$(LUA_SHAREDIR)/ksms.lua
	rm -f $(DESTDIR)$(BINDIR)/ksms
	rm -f $(DESTDIR)$(PREFIX)/share/bash-completion/completions/ksms $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_ksms \
	  $(DESTDIR)$(PREFIX)/share/man/man1/ksms.1

# Also what luarocks make leaves in the checkout (the builtin build compiles
# in place: csrc/*.o and ksms/core.so) and make docs' docs/api/.
clean:
	rm -rf build docs/api
	rm -f csrc/*.o ksms/core.so ksms-*.rockspec.*
	@if [ -d ksms ]; then rmdir ksms; fi
	@$(MAKE) --no-print-directory -C bench clean
