# Two commands do all set-up on a fresh machine: `make example` and `make test`.
# Both create (or reuse) the virtual environment .venv/ at the repository root.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Real-Blender test: bpy 5.0.1 (Python 3.11, ~360 MB wheel) in its own venv, with Blender's numpy<2.
BLENDER_VENV := .venv-blender
BLENDER_STAMP := $(BLENDER_VENV)/.installed
# torch first, pinned to the CPU build that lies on this machine's disk (/opt/wheels); a bare `torch`
# requirement would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: example test test-fast lint venv venv-cuda clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(FIND_LINKS) $(TORCH)
	$(PY) -m pip install -q $(FIND_LINKS) -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# A GPU server (docs/SERVER.md, 'A GPU server'): the same .venv, with the CUDA build of the same torch version
# from PyTorch's CUDA wheel index, then the project (which then finds torch installed and keeps it).
# CUDA=cu126|cu128|cu130 picks the CUDA release the wheels are built for; the NVIDIA driver must support it.
# A CPU torch of the same version counts as installed, so it is removed first.
CUDA ?= cu130
TORCH_CUDA_INDEX := https://download.pytorch.org/whl/$(CUDA)
venv-cuda:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip uninstall -q -y torch
	$(PY) -m pip install -q --index-url $(TORCH_CUDA_INDEX) $(TORCH)
	$(PY) -m pip install -q $(FIND_LINKS) -e '.[test]'
	$(PY) -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPUs', torch.cuda.device_count())"
	touch $(STAMP)

example: $(STAMP)
	$(VENV)/bin/colorprop example --output out/example

test: $(STAMP) $(BLENDER_STAMP) lint
	$(PY) -m pytest -q

# The inner loop: everything but the tests marked slow (> ~2 s) or network (package registries);
# no Blender venv needed. `make test` stays the whole suite, as CI runs it.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not network"

# ruff's formatter and linter (pyproject.toml [tool.ruff]) on every Python file of the tree; part of `make test`.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)

.PHONY: blender-venv blender-test
$(BLENDER_STAMP):
	test -x $(BLENDER_VENV)/bin/python || $(PYTHON) -m venv $(BLENDER_VENV)
	$(BLENDER_VENV)/bin/python -m pip install -q bpy==5.0.1 'numpy<2'
	touch $(BLENDER_STAMP)
blender-venv: $(BLENDER_STAMP)
blender-test: $(STAMP) $(BLENDER_STAMP)
	$(PY) -m pytest -q tests/test_blender_addon.py
