# Thin wrapper around CMake. `make` builds, `make test` builds and runs every test,
# `make run` starts the service (with a throwaway Postgres when DISPATCHERD_DSN is unset).
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
FUZZ_SECONDS ?= 20
ASAN_TARGETS ?= all

.PHONY: all deps configure test unit asan fuzz format bench run clean

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

# Sanitizer builds warn about things plain builds do not (inlined std::function and regex code
# at -O0 with -fsanitize); -Werror stays with the main build.
asan: deps
	@test -f $(ASAN_BUILD)/CMakeCache.txt || cmake -S . -B $(ASAN_BUILD) -DDISPATCHERD_WERROR=OFF \
	  -DDISPATCHERD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target $(ASAN_TARGETS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) $(ASAN_CTEST_ARGS)

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

bench: all
	bench/run.sh $(BUILD)

run: all
	scripts/run-local.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
