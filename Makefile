# cnnviz_widgets developer entry points.
#   make venv    create/refresh the virtualenv (VENV=.venv by default)
#   make demo    JupyterLab on notebooks/00_tour.ipynb, offline, on 127.0.0.1
#   make test    the whole test suite, browser tests included (PYTEST_ARGS=... to pass extra args)
#   make bench   run benchmarks/bench_*.py
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.cnnviz-installed
PYTEST_ARGS ?=
TEST_TIMEOUT ?= 3600
# Jupyter opens a browser only where there is a display (a console browser would grab the terminal).
OPEN_BROWSER ?= $(if $(or $(DISPLAY),$(WAYLAND_DISPLAY),$(filter Darwin,$(shell uname -s))),True,False)

.PHONY: venv demo test bench

venv: $(STAMP)

# Reinstalls whenever pyproject.toml changes. torch/torchvision come from the local pip
# config (find-links); no index URLs here.
$(STAMP): pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install -e ".[test,lab]"
	touch $@

demo: venv
	@port=8888; if (: </dev/tcp/127.0.0.1/8888) 2>/dev/null; then \
	  port=$$($(VPY) -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'); fi; \
	token=$$($(VPY) -c 'import secrets; print(secrets.token_hex(16))'); \
	root=; if [ "$$(id -u)" = 0 ]; then root=--allow-root; fi; \
	echo; echo "cnnviz_widgets tour: http://127.0.0.1:$$port/lab/tree/00_tour.ipynb?token=$$token"; echo; \
	exec $(VPY) -m jupyter lab --ServerApp.root_dir=notebooks --LabApp.default_url=/lab/tree/00_tour.ipynb --ip=127.0.0.1 --port=$$port --ServerApp.port_retries=0 \
	  --IdentityProvider.token=$$token --ServerApp.open_browser=$(OPEN_BROWSER) \
	  --LabApp.news_url=None --LabApp.extension_manager=readonly $$root

# timeout -s INT: pytest then runs its finalizers, which stop the Jupyter/Voila servers and kernels.
test: venv
	timeout -s INT -k 30 $(TEST_TIMEOUT) $(VPY) -m pytest $(PYTEST_ARGS)

bench: venv
	@shopt -s nullglob; for f in benchmarks/bench_*.py; do echo "== $$f"; $(VPY) $$f; done
