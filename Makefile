# shardlora build.
#   make            bin/shardlora and the tools (CPU backend; CUDA objects too when nvcc, cuBLAS and NCCL are found)
#   make CUDA=0     never build CUDA objects
#   make test       install what the tests need (as root), build, run every test; ends "N passed, N failed"
#   make demo       install what the demo needs (as root), build, run jobs/demo.sh
CC       ?= gcc
NVCC     ?= nvcc
CUDA     ?= auto
CUDA_HOME ?= /usr/local/cuda
BUILD    := build
BIN      := bin

# pkg-config module -> Debian package that provides it
DEP_mpi          := libopenmpi-dev
DEP_hdf5-openmpi := libhdf5-openmpi-dev
DEP_openblas     := libopenblas-dev
DEP_libcjson     := libcjson-dev
DEP_cmocka       := libcmocka-dev
LIB_PKGS  := mpi hdf5-openmpi openblas libcjson
TEST_PKGS := cmocka

NO_DEPS_GOALS := deps clean distclean help
ifeq ($(filter-out $(NO_DEPS_GOALS),$(or $(MAKECMDGOALS),all)),)
  SKIP_DEP_CHECK := 1
endif
ifndef SKIP_DEP_CHECK
  ifeq ($(shell command -v pkg-config),)
    $(error pkg-config not found: install it with 'apt-get install pkg-config' (or run 'make deps' as root))
  endif
  MISSING := $(strip $(foreach p,$(LIB_PKGS),$(if $(shell pkg-config --exists $(p) && echo y),,$(p))))
  ifneq ($(MISSING),)
    $(error missing libraries: $(MISSING); install with 'apt-get install $(foreach p,$(MISSING),$(DEP_$(p)))' (or run 'make deps' as root))
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

# CUDA backend: built when nvcc, cuBLAS and NCCL are present (unless CUDA=0).
ifeq ($(CUDA),auto)
  CUDA := $(if $(and $(shell command -v $(NVCC) 2>/dev/null),$(wildcard $(CUDA_HOME)/include/nccl.h),$(wildcard $(CUDA_HOME)/lib64/libcublasLt.so)),1,0)
endif
CU_SRCS := $(wildcard kernels/cuda/*.cu)
ifeq ($(CUDA),1)
  CU_OBJS := $(CU_SRCS:%.cu=$(BUILD)/%.o)
  CFLAGS  += -DSL_HAVE_CUDA -I$(CUDA_HOME)/include
  LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublasLt -lcublas -lnccl -lstdc++
  NVFLAGS := -O2 -std=c++17 -Isrc -Ikernels -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90 -Xcompiler -fPIC,-Wall $(PKG_CFLAGS)
endif

LIB_SRCS  := $(filter-out src/main.c,$(wildcard src/*.c)) $(wildcard kernels/cpu/*.c)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/libshardlora.a
TOOL_DIRS := $(sort $(dir $(wildcard tools/*/*.c)))
TOOLS     := $(foreach d,$(TOOL_DIRS),$(BIN)/shardlora-$(notdir $(patsubst %/,%,$(d))))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps test demo clean help tests-bin
all: $(BIN)/shardlora $(TOOLS)

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/src/runtime.o: CFLAGS += -DSL_VERSION='"$(VERSION)"'

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu
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

tests-bin: all $(UNIT_BINS)

deps:
	tools/install-deps.sh

test:
	@tools/install-deps.sh --tests
	@$(MAKE) --no-print-directory tests-bin
	@tests/run.sh

demo:
	@tools/install-deps.sh
	@$(MAKE) --no-print-directory all
	@jobs/demo.sh

clean:
	rm -rf $(BUILD) $(BIN)

help:
	@sed -n '1,6p' Makefile

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
