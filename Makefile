# esoct: two commands on a fresh clone, `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: install demo test bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# torch is the CPU build that pip finds on this disk; pyradiomics only builds
# without build isolation, after numpy/versioneer are present.
$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PIP) install --upgrade pip
	$(PIP) install numpy versioneer setuptools wheel
	$(PIP) install torch==2.13.0
	$(PIP) install --no-build-isolation pyradiomics
	$(PIP) install -e ".[deep,stats,scale,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/esoct demo --out $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/bench_phantom.py
	$(PY) bench/bench_io.py
	$(PY) bench/bench_cindex.py
	$(PY) bench/bench_delong.py
	$(PY) bench/bench_radiomics.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info src/*.egg-info
