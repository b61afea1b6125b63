# shardlora build.
#   make            bin/shardlora and the tools: the CPU backend, and the CUDA backend when nvcc, cuBLASLt,
#                   NCCL, cuDNN and the cuDNN frontend headers are found (CUDA_HOME, NCCL_HOME, CUDNN_HOME)
#   make CUDA=0     never build the CUDA backend;  make CUDA=1  stop with the missing piece named
#   make test       install what the tests need (as root), build, run every test; ends "N passed, N failed"
#   make test-gpu   build and run the GPU tests (tests/gpu) on a machine with a GPU
#   make test-fresh the README's two commands in a bare Debian 12 chroot, as root (tests/fresh; 6-11 min)
#   make test-asan  the suite against an AddressSanitizer + UBSan build of HEAD (tests/asan; about 30 min)
#   make fuzz       each libFuzzer target of tests/fuzz for FUZZ_SECONDS (default 600), one at a time (clang)
#   make demo       install what the demo needs (as root), build, run jobs/demo.sh
CC       ?= gcc
NVCC     ?= nvcc
CUDA     ?= auto
CUDA_HOME ?= /usr/local/cuda
NCCL_HOME ?= $(CUDA_HOME)
CUDNN_HOME ?= $(CUDA_HOME)
# The cuDNN frontend is header-only C++; tools/fetch-cudnn-frontend.sh puts PyPI's copy here.
CUDNN_FE_INCLUDE ?= build/deps/cudnn-frontend/include
BUILD    := build
BIN      := bin

# pkg-config module -> Debian package that provides it
DEP_mpi          := libopenmpi-dev
DEP_hdf5-openmpi := libhdf5-openmpi-dev
DEP_openblas     := libopenblas-dev
DEP_libcjson     := libcjson-dev
DEP_libpcre2-8   := libpcre2-dev
DEP_icu-uc       := libicu-dev
DEP_cmocka       := libcmocka-dev
LIB_PKGS  := mpi hdf5-openmpi openblas libcjson libpcre2-8 icu-uc
TEST_PKGS := cmocka

# These goals install what is missing first and build in a sub-make, which checks then.
NO_DEPS_GOALS := deps clean distclean help demo test test-fresh
ifeq ($(filter-out $(NO_DEPS_GOALS),$(or $(MAKECMDGOALS),all)),)
  SKIP_DEP_CHECK := 1
endif
ifndef SKIP_DEP_CHECK
  ifeq ($(shell command -v pkg-config),)
    $(error pkg-config not found: install it with 'apt-get install pkg-config' (or run 'tools/install-deps.sh' as root))
  endif
  MISSING := $(strip $(foreach p,$(LIB_PKGS),$(if $(shell pkg-config --exists $(p) && echo y),,$(p))))
  ifneq ($(MISSING),)
    $(error missing libraries: $(MISSING); install with 'apt-get install $(foreach p,$(MISSING),$(DEP_$(p)))' (or run 'tools/install-deps.sh' as root))
  endif
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(LIB_PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(LIB_PKGS) 2>/dev/null)

CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp -MMD -MP \
           -Isrc -Ikernels $(PKG_CFLAGS)
LDLIBS  := $(PKG_LIBS) -fopenmp -lm

# Slurm: the remaining wall time comes from libslurm when its header is installed (libslurm-dev).
ifneq ($(wildcard /usr/include/slurm/slurm.h),)
  CFLAGS += -DSL_HAVE_SLURM
  LDLIBS += -lslurm
endif

# CUDA backend: each piece is looked for where its *_HOME says (lib64 or lib); the first one
# missing is named. CUDA=auto builds the backend when nothing is missing, CUDA=1 insists.
cuda_lib = $(firstword $(wildcard $(1)/lib64/lib$(2).so $(1)/lib/lib$(2).so $(1)/lib/x86_64-linux-gnu/lib$(2).so))
CUDA_MISSING := $(strip \
  $(if $(shell command -v $(NVCC) 2>/dev/null),,nvcc (not on PATH);) \
  $(if $(call cuda_lib,$(CUDA_HOME),cublasLt),,cuBLASLt (no libcublasLt.so under CUDA_HOME=$(CUDA_HOME));) \
  $(if $(wildcard $(NCCL_HOME)/include/nccl.h),,NCCL (no include/nccl.h under NCCL_HOME=$(NCCL_HOME));) \
  $(if $(call cuda_lib,$(NCCL_HOME),nccl),,NCCL (no libnccl.so under NCCL_HOME=$(NCCL_HOME));) \
  $(if $(wildcard $(CUDNN_HOME)/include/cudnn.h),,cuDNN (no include/cudnn.h under CUDNN_HOME=$(CUDNN_HOME));) \
  $(if $(call cuda_lib,$(CUDNN_HOME),cudnn),,cuDNN (no libcudnn.so under CUDNN_HOME=$(CUDNN_HOME));) \
  $(if $(wildcard $(CUDNN_FE_INCLUDE)/cudnn_frontend.h),,cuDNN frontend headers (none in $(CUDNN_FE_INCLUDE): run tools/fetch-cudnn-frontend.sh);))
CUDA_WHY := off: CUDA=$(CUDA)
ifeq ($(CUDA),auto)
  CUDA := $(if $(CUDA_MISSING),0,1)
  CUDA_WHY := not built, missing: $(CUDA_MISSING)
else ifeq ($(CUDA),1)
  ifneq ($(CUDA_MISSING),)
    ifndef SKIP_DEP_CHECK
      $(error make CUDA=1: the CUDA backend needs $(CUDA_MISSING))
    endif
  endif
endif
CU_SRCS := $(wildcard kernels/cuda/*.cu)
GPU_TEST_SRCS := $(wildcard tests/gpu/test_*.cu)
ifeq ($(CUDA),1)
  NVCC_VERSION := $(shell $(NVCC) --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
  cuda_dir = $(dir $(call cuda_lib,$(1),$(2)))
  CUDA_LIBDIRS := $(sort $(call cuda_dir,$(CUDA_HOME),cublasLt) $(call cuda_dir,$(NCCL_HOME),nccl) \
                         $(call cuda_dir,$(CUDNN_HOME),cudnn))
  CU_OBJS := $(CU_SRCS:%.cu=$(BUILD)/%.o)
  CUDA_INCLUDES := -I$(CUDA_HOME)/include -I$(NCCL_HOME)/include -I$(CUDNN_HOME)/include
  CFLAGS  += -DSL_HAVE_CUDA $(CUDA_INCLUDES)
  LDLIBS  += $(foreach d,$(CUDA_LIBDIRS),-L$(d) -Wl,-rpath,$(d)) -lcudart -lcublasLt -lcublas -lnccl \
             -lcudnn -lnvrtc -lstdc++
  NVFLAGS := -O3 -std=c++17 -Isrc -Ikernels -I$(CUDNN_FE_INCLUDE) $(CUDA_INCLUDES) \
             -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
             -Xcompiler -fPIC,-Wall,-fopenmp $(PKG_CFLAGS)
  BUILD_LINE := CPU backend + CUDA backend (nvcc $(NVCC_VERSION); cuBLASLt in $(call cuda_dir,$(CUDA_HOME),cublasLt); NCCL in $(call cuda_dir,$(NCCL_HOME),nccl); cuDNN in $(call cuda_dir,$(CUDNN_HOME),cudnn))
else
  BUILD_LINE := CPU backend only (CUDA backend $(CUDA_WHY))
endif

# Objects depend on the build's flags, kept in a file rewritten only when they change: switching
# CUDA=0 and CUDA=1 (or the compilers) rebuilds what they compile, not only what was edited.
CONFIG_STAMP := $(BUILD)/config.stamp
BUILD_CONFIG := $(CC) $(CFLAGS) | $(NVCC) $(NVFLAGS) | $(LDLIBS)
$(shell mkdir -p $(BUILD) && { [ "$$(cat $(CONFIG_STAMP) 2>/dev/null)" = '$(BUILD_CONFIG)' ] || \
  printf '%s\n' '$(BUILD_CONFIG)' > $(CONFIG_STAMP); })

LIB_SRCS  := $(filter-out src/main.c,$(wildcard src/*.c)) $(wildcard kernels/cpu/*.c)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/libshardlora.a
TOOL_DIRS := $(sort $(dir $(wildcard tools/*/*.c)))
TOOLS     := $(foreach d,$(TOOL_DIRS),$(BIN)/shardlora-$(notdir $(patsubst %/,%,$(d))))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
GPU_BINS  := $(if $(filter 1,$(CUDA)),$(GPU_TEST_SRCS:tests/gpu/%.cu=$(BUILD)/tests/gpu/%))

.PHONY: all build-line deps test test-gpu test-fresh test-asan fuzz demo clean help tests-bin bench-gpu-bins
all: build-line $(BIN)/shardlora $(TOOLS)

build-line:
	@echo "shardlora: building the $(BUILD_LINE)"

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/src/runtime.o: CFLAGS += -DSL_VERSION='"$(VERSION)"'
# sqrtf without errno, so rng_normals' loop vectorises (the values are the same)
$(BUILD)/src/rng.o: CFLAGS += -fno-math-errno

$(BUILD)/%.o: %.c $(CONFIG_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu $(CONFIG_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS) $(CU_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BIN)/shardlora: $(BUILD)/src/main.o $(LIB)
	@mkdir -p $(BIN)
	$(CC) $^ -o $@ $(LDLIBS)

# Each folder tools/NAME/ is one program, bin/shardlora-NAME.
.SECONDEXPANSION:
$(BIN)/shardlora-%: $$(addprefix $(BUILD)/,$$(addsuffix .o,$$(basename $$(wildcard tools/$$*/*.c)))) $(LIB)
	@mkdir -p $(BIN)
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(LDLIBS) $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

# GPU tests (tests/gpu/test_*.cu): a CUDA kernel against its CPU twin; run by make test-gpu.
$(BUILD)/tests/gpu/test_%: $(BUILD)/tests/gpu/test_%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(LDLIBS)

# The tools' objects but their main, for programs that call into a tool (the fuzz targets).
$(BUILD)/tools/%.a: $$(addprefix $(BUILD)/,$$(addsuffix .o,$$(basename $$(filter-out tools/$$*/main.c,$$(wildcard tools/$$*/*.c)))))
	$(AR) rcs $@ $^

# Fuzz targets (tests/fuzz/fuzz_NAME.c) as $(BUILD)/fuzzers/NAME: here each is linked with replay.c,
# which tests/fuzz/test_regressions.sh runs on the regression inputs; make fuzz links them with
# libFuzzer instead (FUZZ_MAIN empty, FUZZ_LDFLAGS=-fsanitize=fuzzer, see tests/fuzz/run.sh).
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(FUZZ_NAMES:%=$(BUILD)/fuzzers/%)
FUZZ_SUPPORT := $(patsubst %.c,$(BUILD)/%.o,$(filter-out tests/fuzz/fuzz_%.c tests/fuzz/replay.c,$(wildcard tests/fuzz/*.c)))
FUZZ_MAIN    ?= $(BUILD)/tests/fuzz/replay.o
$(BUILD)/tests/fuzz/%.o: CFLAGS += -Itools/import -Itools/tokenize
$(BUILD)/fuzzers/%: $(BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_SUPPORT) $(FUZZ_MAIN) $(BUILD)/tools/import.a \
                    $(BUILD)/tools/tokenize.a $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_LDFLAGS) $^ -o $@ $(LDLIBS)

# kept, not deleted as intermediates of the chain above
.SECONDARY: $(BUILD)/tools/import.a $(BUILD)/tools/tokenize.a $(FUZZ_SUPPORT) \
            $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/fuzz_%.o)

tests-bin: all $(UNIT_BINS) $(GPU_BINS) $(FUZZ_BINS)

# GPU benchmarks (bench/gpu/NAME.cu): standalone programs build/bench/gpu/NAME.
BENCH_GPU_BINS := $(if $(filter 1,$(CUDA)),$(patsubst bench/gpu/%.cu,$(BUILD)/bench/gpu/%,$(wildcard bench/gpu/*.cu)))
$(BUILD)/bench/gpu/%: $(BUILD)/bench/gpu/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(LDLIBS)

bench-gpu-bins: $(BENCH_GPU_BINS)

deps:
	tools/install-deps.sh

test:
	@tools/install-deps.sh --tests
	@$(MAKE) --no-print-directory tests-bin
	@tests/run.sh

test-gpu:
	@$(MAKE) --no-print-directory CUDA=1 tests-bin
	@tests/run.sh /gpu/

# The README's quick start in a bare Debian 12 chroot, as root (too long for make test and CI).
test-fresh:
	@tests/fresh/run.sh

test-asan:
	@tests/asan/run.sh

fuzz:
	@tests/fuzz/run.sh

demo:
	@tools/install-deps.sh
	@$(MAKE) --no-print-directory all
	@jobs/demo.sh

# build/deps (fetched headers) survives: the GPU host cannot fetch it again.
clean:
	find $(BUILD) -mindepth 1 -maxdepth 1 ! -name deps -exec rm -rf {} + 2>/dev/null; rm -rf $(BIN)

help:
	@sed -n '1,10p' Makefile

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
