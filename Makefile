# lightning_pc: two commands, `make test` and `make demo`, each complete on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_CLUSTER ?= torch-cluster
APT_PACKAGES := libusb-1.0-0 libgomp1 libvulkan1 mesa-vulkan-drivers
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PYTEST_ARGS ?=

.PHONY: test demo demo-ops install sysdeps lint bench clean gpu-check

# --- setup, in stages; each stage leaves a stamp so a second run takes seconds -------------

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip wheel setuptools
	touch $@

sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo ">> installing Debian packages for Open3D:$$missing"; \
	    (apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
	     (apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing)); \
	  else \
	    echo "Open3D needs Debian packages that are missing:$$missing"; \
	    echo "Run as root:  sudo apt-get update && sudo apt-get install -y $(APT_PACKAGES)"; \
	    exit 1; \
	  fi; \
	fi

$(VENV)/.torch: $(VENV)/.created
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH)"
	touch $@

# torch-cluster is one C++ extension per source file, and setuptools builds extensions one
# after another on one core. `build_ext --parallel` (set through DIST_EXTRA_CONFIG, which
# setuptools reads as an extra setup.cfg, since pip passes no build_ext options) builds them
# side by side, one per core; ninja (torch's extension builder uses it when it is installed)
# and MAX_JOBS parallelise inside each extension.
NPROC := $(shell nproc 2>/dev/null || echo 2)
MAX_JOBS ?= $(NPROC)
$(VENV)/.torch_cluster: $(VENV)/.torch
	@echo ">> torch-cluster (compiles from source the first time, $(MAX_JOBS) extensions at a time; pip caches the wheel)"
	$(PY) -c "import torch_cluster" 2>/dev/null || { \
	  $(PIP) install ninja && \
	  printf '[build_ext]\nparallel = %s\n' $(MAX_JOBS) > $(VENV)/build_ext.cfg && \
	  PATH="$(abspath $(VENV))/bin:$$PATH" DIST_EXTRA_CONFIG="$(abspath $(VENV))/build_ext.cfg" \
	  MAX_JOBS=$(MAX_JOBS) $(PIP) install --no-build-isolation "$(TORCH_CLUSTER)"; }
	touch $@

$(VENV)/.package: $(VENV)/.torch_cluster pyproject.toml
	$(PIP) install -e ".[dev]"
	touch $@

install: sysdeps $(VENV)/.package

# --- the two commands ------------------------------------------------------------------

# The suite runs in one process per core (pytest-xdist; a file's tests stay in one process,
# so its module fixtures are built once): most of its time is subprocesses (the CLI, DDP
# ranks) waiting on each other, which two processes overlap. TEST_WORKERS=0 runs it serially.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
test: install
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/lightning-pc fit --config configs/quickstart.yaml

# A smaller job on the neighbour ops alone: points fitted to a torus by Chamfer distance.
demo-ops: install
	$(PY) -m lightning_pc.demo

lint: install
	$(VENV)/bin/ruff check lightning_pc tests benchmarks
	$(VENV)/bin/mypy lightning_pc

bench: install
	$(PY) benchmarks/ops.py

# Learning curves on real ModelNet10 (hdf5 layout, e.g. the shared modelnet10_1024): our
# PointNet++ SSG run from configs/modelnet10_pointnet2_ssg.yaml beside its PyG twin, epoch by
# epoch (~30 min on 2 cores). BENCH_ACCURACY_ARGS="--models dgcnn --epochs 1 --train-subset 1000"
MODELNET10_ROOT ?= ../shared/data/modelnet10_1024
BENCH_ACCURACY_ARGS ?=
bench-accuracy: install
	$(PY) benchmarks/accuracy.py --root $(MODELNET10_ROOT) $(BENCH_ACCURACY_ARGS)

# The README's headline: plain `lightning-pc fit` of configs/modelnet10_pointnet2_ssg_fast.yaml
# on ModelNet10 until test OA reaches 90% (at most 12 epochs, ~25 min on 2 idle cores).
bench-accuracy-fit: install
	$(PY) benchmarks/accuracy.py --root $(MODELNET10_ROOT) --fit-to 0.90 --epochs 12 \
		--config configs/modelnet10_pointnet2_ssg_fast.yaml

.PHONY: bench-accuracy bench-accuracy-fit

clean:
	rm -rf $(VENV) .pytest_cache

# On a GPU machine, offline, with the python3 that holds torch (no install step): the gpu
# tests, then the ops / train-step / sparse-conv benchmarks on CUDA, one table (< 8 min).
GPU_CHECK_ARGS ?=
gpu-check:
	$(PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

# Open3D's torch ops are compiled against a CUDA build of torch and cannot load beside the
# CPU torch of .venv; this builds a side environment (several GB) so that benchmarks/ops.py
# can time them as a peer, in a subprocess, in the same run.
O3D_VENV ?= .venv-o3d
$(O3D_VENV)/.created:
	$(PYTHON) -m venv $(O3D_VENV)
	PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null $(O3D_VENV)/bin/pip install torch==2.13.0 open3d==0.20.0 nvidia-cuda-runtime-cu12 numpy
	touch $@

bench-peers: $(O3D_VENV)/.created

.PHONY: bench-peers

# Point Transformer V3 against Pointcept's own model file (benchmarks/ptv3_oracle.py): a side
# environment with spconv's CPU wheel; Pointcept is cloned into it unless POINTCEPT names a
# checkout (or a bare git directory) with tag v1.5.1 (the released PT-v3m1 weights' model file;
# the clone is partial: full history, file contents fetched on demand). Prints the parameter
# counts and the max output gap.
PTV3_VENV ?= .venv-ptv3
POINTCEPT ?= $(PTV3_VENV)/Pointcept
$(PTV3_VENV)/.created:
	$(PYTHON) -m venv $(PTV3_VENV)
	PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null $(PTV3_VENV)/bin/pip install torch==2.13.0 spconv==2.3.8 cumm addict numpy
	$(PTV3_VENV)/bin/pip install -e .
	touch $@

bench-ptv3-oracle: $(PTV3_VENV)/.created
	test -e $(POINTCEPT) || git clone --filter=blob:none https://github.com/Pointcept/Pointcept $(POINTCEPT)
	$(PTV3_VENV)/bin/python benchmarks/ptv3_oracle.py --pointcept $(POINTCEPT)

.PHONY: bench-ptv3-oracle
