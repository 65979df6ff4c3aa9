# Ferry — the two commands a newcomer needs are `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit lint bench clean-lab

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system.sh
	bash scripts/install-system.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# Selenium (the web view's browser test) apart from the venv: httpx would import its
	# trio in every `ferry` command the tests run (~0.1-0.2 s each; tests/lab/browser.py)
	$(PY) -m pip install -q --upgrade --target $(VENV)/browser 'selenium>=4.20'
	touch $(STAMP)

demo: install
	bash scripts/demo.sh

test: install
	$(VENV)/bin/pytest -v --durations=60

test-unit: install
	$(VENV)/bin/pytest -q -m "not lab and not postgres and not fuzz"

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/overhead.py

clean-lab: install
	$(VENV)/bin/ferry lab down
