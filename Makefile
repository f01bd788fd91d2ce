# vnsearch: `make demo` sets up, indexes the sample corpus and serves it; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
INDEX ?= var/demo-index
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

DEMO_DOCS := $(SHARED)/corpus/reports $(SHARED)/corpus/laws/Luat-Phong-chong-tham-nhung-322049.txt

.PHONY: setup demo index serve test lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

index: setup
	$(VENV)/bin/vnsearch index $(DEMO_DOCS) --index $(INDEX)

demo: index
	$(VENV)/bin/vnsearch search "ky luat dang vien" --index $(INDEX) -k 3
	$(VENV)/bin/vnsearch serve --index $(INDEX) --port $(PORT)

test: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest
