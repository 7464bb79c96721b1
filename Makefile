# The README's commands. `make repro` and `make test` set up what they need first.
VENV ?= .venv
BIN := $(VENV)/bin
# The Pythons requirements.txt is one lock for, newest first (`make lock-check` proves it).
PYTHONS := 3.13 3.12 3.11
# The stages run `python`: the environment's, whatever the caller's PATH holds.
export PATH := $(abspath $(BIN)):$(PATH)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages by name; apt's lists are refreshed only when the install fails without it.
APT_INSTALL := $(SUDO) apt-get install -y -q --no-install-recommends
apt_install = { $(APT_INSTALL) $(1) || { $(SUDO) apt-get update -q && $(APT_INSTALL) $(1); }; }
DEBIAN_DATA := /usr/share/datasets/fashion-mnist
KERAS_DATA := $(or $(KERAS_HOME),$(HOME)/.keras)/datasets/fashion-mnist
# pytest-xdist's workers for `make test` and `make test-all`: one per core.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# The CUDA layer (requirements-cuda.txt) is installed where an NVIDIA driver is present, or with
# CUDA=1; CUDA=0 leaves it out anywhere.
CUDA ?= $(shell { [ -e /proc/driver/nvidia/version ] || command -v nvidia-smi; } >/dev/null 2>&1 && echo 1)

.PHONY: repro test test-all test-real mutants equivalence report sweep sweep-merge bench lint setup data chromium image image-test gpu-check readme lock-check FORCE

# The last line says whether this machine is of the kind the committed run trained on.
repro: setup
	dvc repro
	@python -m trainstyles.tools.machines --against HEAD

# The fast tier: unit tests and small trainings in pytest's own processes.
test: setup
	pytest -n $(JOBS) --durations=10

# Everything but the acceptance run: the fast tier and the slow one, which runs the pipeline,
# starts TensorFlow processes and opens pages in Chromium (what CI runs). A module's tests run on
# one worker, which builds the module's fixtures once; the session's small pipeline run is built
# once for all workers (tests/conftest.py).
test-all: setup chromium
	pytest -m "not real" -n $(JOBS) --dist loadfile --no-loadscope-reorder --durations=25

# The acceptance run on the real data (minutes): .ci/run calls it after `make test-all`.
test-real: setup
	pytest -m real

# Each guarantee of docs/testing.md broken on purpose, one at a time, in a temporary copy: the
# tests that hold it must fail (minutes). Exits 1 if a broken guarantee passes the tests.
mutants: setup
	python tests/mutants.py

# The proof that fit(), the train_step override and the raw loop are the same math, to the bit.
equivalence: setup
	dvc repro split
	python -m trainstyles.tools.equivalence --epochs 2

# The comparison report, report/report.md with its PNGs: the styles side by side, the sweep's
# noise, and DVC's params and metrics diff against REV, each change labelled beyond or within
# noise (the pull-request workflow passes the base branch). SAME_MACHINE=1 first reproduces REV
# in a git worktree on this machine, so that the diff compares two runs of one machine.
REV ?= HEAD
SAME_MACHINE ?=
report: setup
	python -m trainstyles.tools.report --against $(REV) $(if $(SAME_MACHINE),--same-machine)

# The seed sweep: every style under SEEDS seeds (each with its own summation order) as queued
# `dvc exp run`s, the workspace untouched; writes this machine kind's record, sweep/<kind>.json,
# the noise the report and make test-real judge this kind's runs by. SEEDS=N for N runs; by
# default as many as that record holds (at least 5): a smaller record never replaces a larger
# one unless asked (python -m trainstyles.tools.sweep --replace).
# Spread over hosts (docs/noise.md): `make sweep SHARD=I/N SEEDS=S` on each of N hosts trains its
# share of the S runs and pushes them (`dvc exp push origin`); then `make sweep-merge SEEDS=S` on
# one pulls them all and writes a record per kind of machine they trained on.
SEEDS ?=
SHARD ?=
sweep: setup
	dvc repro split
	python -m trainstyles.tools.$(if $(SHARD),sweep_shards --shard $(SHARD),sweep) $(if $(SEEDS),--seeds $(SEEDS))

sweep-merge: setup
	python -m trainstyles.tools.sweep_shards --merge $(if $(SEEDS),--seeds $(SEEDS))

# README's table of the committed run, rewritten from the workspace's run (after `make repro`,
# before committing it); `make report` only writes report/.
readme: setup
	python -m trainstyles.tools.report --readme

# The speed bench (a few minutes): each style's epoch against JAX and PyTorch peers and the FLOP
# limit, each stage's time and peak memory in a full `dvc repro -f` (run in a temporary copy, so
# this checkout's outputs are untouched), and a no-op `dvc repro`. Prints the tables, writes
# bench/results.json and rewrites docs/bench.md's tables from it (`python -m
# trainstyles.tools.bench --page` redoes only that). A peer that did not install is left out, and
# the bench says why in one line. The PyTorch peer has a venv of its own (requirements-torch.txt
# says why).
TORCH_VENV := .venv-torch
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_PIP := $(TORCH_VENV)/bin/pip --quiet --disable-pip-version-check
bench: setup $(VENV)/.bench-installed $(TORCH_VENV)/.installed
	dvc repro split
	python -m trainstyles.tools.bench

# The JAX peers in the main venv, held to requirements.txt's pins.
$(VENV)/.bench-installed: requirements-bench.txt requirements.txt $(VENV)/.installed
	@if $(BIN)/pip install --quiet --disable-pip-version-check -c requirements.txt -r requirements-bench.txt; then \
		touch $@; \
	else \
		echo "the bench extra (jax) did not install: the bench will skip the JAX peers"; \
	fi

# The PyTorch peer's venv: torch from PyTorch's CPU index where it answers within seconds, else
# from PyPI with the NVIDIA wheels its build pulls. Where neither installs, the venv keeps pip's
# error in one line (not-installed), which the bench says in place of the peer's figures; the
# next `make bench` tries again. The main venv's Python makes it, but a main venv made again does
# not make it again (order-only): a few GB may come down for it.
$(TORCH_VENV)/.installed: requirements-torch.txt requirements-torch-cuda.txt | $(VENV)/.installed
	rm -rf $(TORCH_VENV)
	$(BIN)/python -m venv $(TORCH_VENV)
	@$(TORCH_PIP) install --no-deps --timeout 10 --retries 0 --index-url $(TORCH_CPU_INDEX) \
		"$$(grep '^torch==' requirements-torch.txt)" 2>/dev/null \
		|| echo "$(TORCH_VENV): PyTorch's CPU index not reached: torch comes from PyPI"
	@if $(TORCH_PIP) install -r requirements-torch.txt -c requirements-torch-cuda.txt 2>$(TORCH_VENV)/pip.log; then \
		echo "$(TORCH_VENV): torch $$($(TORCH_VENV)/bin/pip show torch | sed -n 's/^Version: //p')"; \
		touch $@; \
	else \
		{ grep -m1 '^ERROR: ' $(TORCH_VENV)/pip.log | cut -c8- | grep . \
			|| echo "pip install -r requirements-torch.txt failed"; } > $(TORCH_VENV)/not-installed; \
		echo "$(TORCH_VENV): the PyTorch peer did not install: $$(cat $(TORCH_VENV)/not-installed)"; \
	fi

# requirements.txt is one lock for each of PYTHONS: pip's own resolver, in a dry run per version,
# finds a manylinux x86-64 wheel for every pin and nothing unpinned. It asks the package index, so
# CI runs it, not the fast tier. Prints a line per version; exits 1 naming a pin without a wheel.
lock-check: $(VENV)/.installed
	python .ci/lock_check.py $(PYTHONS)

lint: setup
	ruff check .
	ruff format --check .
	actionlint
	hadolint Dockerfile

# The production image, for a host with Docker (`make image ENGINE=podman` elsewhere).
ENGINE ?= docker
IMAGE ?= trainstyles
BASE_IMAGE ?= debian:bookworm-slim
image:
	@command -v $(ENGINE) >/dev/null || { echo "make image: error: $(ENGINE) not found; set ENGINE=podman or install Docker" >&2; exit 1; }
	$(ENGINE) build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

# The Dockerfile built and smoke-run here, where no Docker engine runs and no registry answers:
# podman builds it on a local debootstrap of the base's Debian release, through the smoke stage
# (gpu-check, the pipeline on tiny params, the fast tests), then the production image. debootstrap
# needs root, so a user runs it all through sudo: podman keeps one image store per user. `podman run` does not
# work here, hence the smoke run as a build stage. Layers are cached in podman's storage.
CA_BUNDLE := /etc/ssl/certs/ca-certificates.crt
PODMAN_BUILD := podman build --isolation chroot $(if $(wildcard $(CA_BUNDLE)),-v $(CA_BUNDLE):$(CA_BUNDLE):ro)
image-test:
	@command -v podman >/dev/null || { echo "make image-test: error: podman not found (apt-get install podman debootstrap)" >&2; exit 1; }
	@start=$$(date +%s) \
	&& base=$$($(SUDO) docker/standin-base.sh) \
	&& echo "image-test: stand-in base $$base" \
	&& $(SUDO) $(PODMAN_BUILD) --build-arg BASE_IMAGE=$$base --target smoke -t $(IMAGE):smoke . \
	&& $(SUDO) $(PODMAN_BUILD) --build-arg BASE_IMAGE=$$base -t $(IMAGE):standin . \
	&& size=$$($(SUDO) podman image inspect --format '{{.Size}}' $(IMAGE):standin) \
	&& echo "image-test: built $(IMAGE):standin, $$(( size / 1000000 )) MB, in $$(( $$(date +%s) - start )) s"

setup: $(VENV)/.installed $(if $(filter 1,$(CUDA)),$(VENV)/.cuda-installed) node_modules/.package-lock.json data

# The venv is made by PYTHON=, or else by the newest of python3.13 … python3.11 that can make one,
# or else by python3, which is refused in one line naming the package to install if it cannot. A
# Python is asked, not looked up: a name on PATH may be a shim that runs nothing. It can make a
# venv if it has ensurepip, which Debian and Ubuntu ship apart, as python3.x-venv.
python_probe = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2], end=""); import ensurepip; print("+venv")' 2>/dev/null)
python_version = $(firstword $(subst +, ,$(call python_probe,$(1))))
makes_venvs = $(filter $(addsuffix +venv,$(PYTHONS)),$(call python_probe,$(1)))
PYTHON ?= $(firstword $(foreach version,$(PYTHONS),$(if $(call makes_venvs,python$(version)),python$(version))) python3)
# Ubuntu 22.04's python3 is 3.10, and its python3.11 a package of its own.
python_refusal = $(strip $(if $(filter $(PYTHONS),$(call python_version,$(1))), \
	$(1) cannot make a venv: $(SUDO) apt-get install python$(call python_version,$(1))-venv, \
	$(1) is $(or $(addprefix Python ,$(call python_version,$(1))),no Python that runs) and \
	trainstyles needs $(lastword $(PYTHONS)) to $(firstword $(PYTHONS)): \
	$(SUDO) apt-get install python$(lastword $(PYTHONS))-venv (or name one with PYTHON=)))

# A venv outlives the Python that made it (a distribution upgrade removes it), and PYTHON= may name
# another version than the venv's: then the venv is made anew, never two Pythons in one.
VENV_PYTHON := $(call python_version,$(BIN)/python)
VENV_STALE := $(strip $(if $(filter $(PYTHONS),$(VENV_PYTHON)), \
	$(if $(filter command line environment,$(origin PYTHON)), \
		$(filter-out $(VENV_PYTHON),$(or $(call python_version,$(PYTHON)),none))),stale))
FORCE:

$(VENV)/.installed: requirements.txt pyproject.toml $(if $(VENV_STALE),FORCE)
ifneq ($(VENV_STALE),)
	$(eval PYTHON := $(PYTHON))$(if $(call makes_venvs,$(PYTHON)),,$(error $(call python_refusal,$(PYTHON))))
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
endif
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# NVIDIA's CUDA libraries for TensorFlow, from PyPI (a few GB), on top of requirements.txt.
$(VENV)/.cuda-installed: requirements-cuda.txt $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-cuda.txt
	touch $@

# GPU readiness, with or without a GPU: TensorFlow's CUDA build, each CUDA library it opens
# (from the CUDA layer's wheels, at the major versions of its build), XLA's ptxas, the driver and
# the GPUs it shows. Installs the CUDA layer first. Exits 1 naming what failed (docs/gpu.md).
gpu-check: $(VENV)/.cuda-installed
	python -m trainstyles.tools.gpu_check

# Vega, Vega-Lite and Vega-Embed for `dvc plots show`'s page (.dvc/plots-page.html loads them
# from here, so the page needs no network), as package-lock.json pins them.
node_modules/.package-lock.json: package.json package-lock.json
	@command -v npm >/dev/null || $(call apt_install,nodejs npm)
	npm ci --no-audit --no-fund
	touch $@

# The browser tests' headless Chromium: Debian's package, or Ubuntu's snap where it is installed
# (Ubuntu's apt package is only a stub that asks for the snap). Without one the browser tests
# skip, saying so; in CI they fail.
chromium:
	@command -v chromium >/dev/null || [ -x /snap/bin/chromium ] || $(call apt_install,chromium) \
		|| echo "make: no Chromium installed (Ubuntu: snap install chromium): the browser tests skip"

# prepare finds the data by itself (FASHION_MNIST_DIR, Debian's package, the Keras cache, the
# download); here we only install Debian's package when none of the local copies exists.
data:
	@if [ -n "$$FASHION_MNIST_DIR" ] || [ -d $(DEBIAN_DATA) ] || [ -f $(KERAS_DATA)/train-images-idx3-ubyte.gz ]; then \
		true; \
	elif command -v apt-get >/dev/null; then \
		$(call apt_install,dataset-fashion-mnist); \
	else \
		echo "Fashion-MNIST not found locally and no apt-get: the prepare stage will download it"; \
	fi
