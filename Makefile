# esoct: two commands on a fresh clone, `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: install demo test bench clean browser

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

# nnU-Net v2 (for the export's integrity test) lives in its own venv layered on ours: its
# dependency chain brings PyPI's torchvision, which cannot import beside this torch and must
# not reach the main venv. torch stays 2.13.0 CPU through the constraint.
NNVENV  := .venv-nnunet
NNSTAMP := $(NNVENV)/.installed
$(NNSTAMP): $(STAMP)
	$(PYTHON) -m venv $(NNVENV) || python3 -m venv $(NNVENV)
	$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > "$$($(NNVENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/esoct_main.pth"
	echo "torch==2.13.0" > $(NNVENV)/constraints.txt
	$(NNVENV)/bin/python -m pip install -q -c $(NNVENV)/constraints.txt nnunetv2 && touch $(NNSTAMP) || echo "nnunetv2 could not be installed: the nnU-Net integrity test will skip"

install: $(STAMP)

# Debian's chromium renders the HTML report in its browser test (tests/report/test_report_browser.py).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed: the browser test of the report will skip"

demo: $(STAMP)
	$(VENV)/bin/esoct demo --out $(DEMO_DIR)

test: $(STAMP) $(NNSTAMP) browser
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/bench_phantom.py
	$(PY) bench/bench_io.py
	$(PY) bench/bench_cindex.py
	$(PY) bench/bench_delong.py
	$(PY) bench/bench_radiomics.py
	$(PY) bench/bench_tstage.py
	$(PY) bench/bench_segment.py
	$(PY) bench/bench_segment_memory.py

clean:
	rm -rf $(VENV) $(NNVENV) $(DEMO_DIR) build *.egg-info src/*.egg-info
