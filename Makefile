# Two entry points for a fresh machine with Python 3.11: `make demo` (main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv demo fidelity test test-slow bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/omrl-train demo

fidelity: venv  # the fidelity protocol at the small budget (< 1 h on 2 cores); omrl-study fidelity --help
	$(BIN)/omrl-study fidelity --budget small --seeds 3

test: venv
	$(BIN)/python -m pytest -q

test-slow: venv
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) .pytest_cache
