# The two commands of the README. Each creates the virtual environment when it is missing.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench docs clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deepens demo --out out/demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/speed.py

# The notebooks of examples/, executed (full settings; DEEPENS_QUICK=1 make docs for the quick ones) and
# written as static HTML into docs/, for reading without Jupyter.
docs: $(STAMP)
	$(VENV)/bin/python -m nbconvert --to html --execute --ExecutePreprocessor.timeout=3600 --output-dir docs examples/*.ipynb

clean:
	rm -rf $(VENV) out
