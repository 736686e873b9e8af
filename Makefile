# Thin wrapper around CMake. `make` builds, `make test` builds and runs every test,
# `make run` starts the service (with a throwaway Postgres when DISPATCHERD_DSN is unset),
# `make demo` runs two nodes and publishes a mix of tasks to them.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
FUZZ_SECONDS ?= 20
# Upstream's repository (a bare git copy) for `make interop`; DISPATCHERD_UPSTREAM_DIR, when set,
# names an already extracted source tree instead. Upstream's code is never committed here.
UPSTREAM_GIT ?= /work/.mirror/ansible+dispatcherd/repo
UPSTREAM_REF ?= HEAD
ASAN_TARGETS ?= all
ASAN_CXX   ?= clang++

.PHONY: all deps configure test unit interop asan fuzz format bench soak run demo install clean

all: configure
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@scripts/install-deps.sh

configure: deps
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -DDISPATCHERD_WERROR=ON $(CMAKE_ARGS)

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

unit: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

# Upstream's Python service, CLI and publisher against ours (tests/interop). Extracts upstream
# into $(BUILD)/upstream unless DISPATCHERD_UPSTREAM_DIR names a tree.
interop: configure
	cmake --build $(BUILD) -j $(JOBS) --target dispatcherd dispatcherctl interop_tests
	@if [ -n "$$DISPATCHERD_UPSTREAM_DIR" ]; then \
	  echo "interop: upstream from DISPATCHERD_UPSTREAM_DIR=$$DISPATCHERD_UPSTREAM_DIR"; \
	elif git --git-dir=$(UPSTREAM_GIT) rev-parse -q --verify $(UPSTREAM_REF) >/dev/null 2>&1; then \
	  rm -rf $(BUILD)/upstream.tmp && mkdir -p $(BUILD)/upstream.tmp && \
	  git --git-dir=$(UPSTREAM_GIT) archive $(UPSTREAM_REF) | tar -x -C $(BUILD)/upstream.tmp && \
	  rm -rf $(BUILD)/upstream && mv $(BUILD)/upstream.tmp $(BUILD)/upstream && \
	  echo "interop: upstream $$(git --git-dir=$(UPSTREAM_GIT) rev-parse --short $(UPSTREAM_REF)) in $(BUILD)/upstream"; \
	elif [ -f $(BUILD)/upstream/dispatcherd/cli.py ]; then \
	  echo "interop: $(UPSTREAM_GIT) not found; using the tree already in $(BUILD)/upstream"; \
	else \
	  echo "interop: no upstream: set DISPATCHERD_UPSTREAM_DIR or UPSTREAM_GIT" >&2; exit 1; \
	fi
	cd $(BUILD) && ctest --output-on-failure -L interop

# Every test under AddressSanitizer + UndefinedBehaviorSanitizer, built with clang (ASAN_CXX):
# it compiles this code base 1.5x faster than GCC at -O0, and its instrumented binaries start in
# a third of the time (the unit tests are one process each), with precompiled headers on top.
# Sanitizer builds warn about things plain builds do not; -Werror stays with the main build.
# Reports go to $(ASAN_BUILD)/sanitizer-logs, one file per process: the services the tests
# start, their forked workers and the CLI write their stderr to logs the tests delete, so a
# finding there would not fail a test. Any file there fails the target.
asan: deps
	@test -f $(ASAN_BUILD)/CMakeCache.txt || CXX=$(ASAN_CXX) cmake -S . -B $(ASAN_BUILD) \
	  -DDISPATCHERD_WERROR=OFF -DDISPATCHERD_SANITIZE=ON -DDISPATCHERD_PRECOMPILE_HEADERS=ON \
	  -DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target $(ASAN_TARGETS)
	@rm -rf $(ASAN_BUILD)/sanitizer-logs && mkdir -m 1777 $(ASAN_BUILD)/sanitizer-logs
	@cd $(ASAN_BUILD) && logs=$$PWD/sanitizer-logs && \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:log_path=$$logs/asan \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$$logs/ubsan \
	  ctest --output-on-failure -j $(JOBS) $(ASAN_CTEST_ARGS); rc=$$?; \
	  if [ -n "$$(ls -A $$logs)" ]; then \
	    for f in $$logs/*; do echo "== $$f"; cat "$$f"; done; \
	    echo "asan: sanitizer reports above (in $$logs)" >&2; exit 1; \
	  fi; exit $$rc

fuzz: deps
	@test -f $(FUZZ_BUILD)/CMakeCache.txt || CXX=clang++ cmake -S . -B $(FUZZ_BUILD) \
	  -DDISPATCHERD_BUILD_FUZZERS=ON -DDISPATCHERD_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@for f in $(FUZZ_BUILD)/tests/fuzz/fuzz_*; do \
	  [ -x "$$f" ] || continue; echo "== $$f ($(FUZZ_SECONDS)s)"; \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$(basename $$f); \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 $(FUZZ_BUILD)/corpus/$$(basename $$f) \
	    tests/fuzz/seeds/$$(basename $$f) 2>&1 | tail -n 3 || exit 1; \
	done

format:
	@git ls-files '*.cpp' '*.h' | xargs clang-format -i

# The performance table of DESIGN section 10 (about 10 minutes; BENCH_* variables: bench/run.sh).
bench: configure
	cmake --build $(BUILD) -j $(JOBS) --target dispatcherd dispatcherctl bench_tools
	bench/run.sh $(BUILD)

# 10 minutes (SOAK_SECONDS) at SOAK_RATE tasks/s with random cancels, timeouts, failures and
# worker kills; fails unless every task is accounted for and main's memory and fds stay flat.
soak: all
	bench/soak.py $(BUILD)

run: all
	scripts/run-local.sh $(BUILD)

# Binaries, <dispatcherd/task.h>, libdispatcherd.a and the CMake package (find_package(dispatcherd)).
PREFIX ?= /usr/local
install: all
	cmake --install $(BUILD) --prefix $(PREFIX)

# Two nodes on the same channels, a mix of tasks, `running` and `workers` from both, then a
# clean stop (scripts/demo.sh; same throwaway Postgres as `make run`).
demo: all
	scripts/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
