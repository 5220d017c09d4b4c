# Two commands do all the set-up on a fresh machine:
#   make demo   - venv + install, simulate the paper's phantom case, joint vs separate, table + figures
#   make test   - venv + install (core, plugins/*, examples/custom_modality, test extras), run the tests
#   make docs   - the API reference (Sphinx, warnings as errors) into build/docs/html
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: install demo test docs clean

$(BIN)/mmip: pyproject.toml plugins/*/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,docs]" -e plugins/scanprobe -e "plugins/ptychography[xraylib]" \
		-e plugins/fluorescence -e plugins/paper -e "plugins/tomography[xraylib]" -e plugins/ptychodus \
		-e examples/custom_modality
	$(BIN)/python -m pip install -q mpich mpi4py pylops-mpi || echo "MPI wheels unavailable: the MPI tests will be skipped"
	touch $(BIN)/mmip

install: $(BIN)/mmip

demo: install
	$(BIN)/mmip simulate phantom --noise 0.03 --seed 0 -o $(OUT)/phantom.h5
	$(BIN)/mmip compare $(OUT)/phantom.h5 -o $(OUT)/compare --iterations 100 --stop iterations

test: install
	$(BIN)/python -m pytest -q

# the API reference: Sphinx (autodoc + numpydoc) over the public API, the docs/*.md guides linked from it; any
# warning (a malformed docstring section, a cross reference that does not resolve) fails the build
docs: install
	$(BIN)/python -m sphinx -W --keep-going -q -b html -d build/docs/doctrees docs build/docs/html
	@echo "API reference: build/docs/html/index.html"

clean:
	rm -rf $(VENV) $(OUT)
