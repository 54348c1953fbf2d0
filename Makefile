# Developer entry points. `make test` is the one command that runs every test (CI calls it).
PYTHON ?= python3
JOBS ?= 2

.PHONY: install dev test test-cpp test-py bench clean

install:            ## build and install the package (the native core is compiled by scikit-build-core)
	$(PYTHON) -m pip install .

dev:                ## editable install for development (rerun after changing C++)
	$(PYTHON) -m pip install --no-build-isolation -e ".[test]" -Cbuild-dir=build/dev

test: test-cpp test-py  ## GoogleTest (ctest) and pytest

test-cpp:           ## configure, build and run the C++ unit tests (needs libgtest-dev)
	cmake --preset dev-cpu
	cmake --build --preset dev-cpu -j $(JOBS)
	ctest --preset dev-cpu

test-py:            ## the Python suite against the installed package (cuda tests skip without a GPU)
	PYTHONSAFEPATH=1 pytest -q

bench:              ## the core benchmarks (by hand, not a test)
	$(PYTHON) benchmarks/bench_core.py

clean:
	rm -rf build dist *.egg-info
