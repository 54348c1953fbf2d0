# Developer entry points. `make test` is the one command that runs every test (CI calls it).
PYTHON ?= python3
JOBS ?= 2

WHEELHOUSE ?= build/wheelhouse

.PHONY: install dev test test-cpp test-py test-wheel wheel wheel-cuda bench clean

install:            ## build and install the package (the native core is compiled by scikit-build-core)
	$(PYTHON) -m pip install .

dev:                ## editable install for development (rerun after changing C++)
	$(PYTHON) -m pip install --no-build-isolation -e ".[test]" -Cbuild-dir=build/dev

test: test-cpp test-py test-wheel  ## GoogleTest (ctest), pytest, and the CPU wheel in a fresh venv

test-cpp:           ## configure, build and run the C++ unit tests (needs libgtest-dev)
	cmake --preset dev-cpu
	cmake --build --preset dev-cpu -j $(JOBS)
	ctest --preset dev-cpu

test-py:            ## the Python suite against the installed package (cuda tests skip without a GPU)
	PYTHONSAFEPATH=1 pytest -q

wheel:              ## the CPU wheel in dist/: built, repaired to manylinux by auditwheel, checked
	$(PYTHON) tools/build_wheel.py --out dist

wheel-cuda:         ## the CUDA wheel (+cuXYZ label) in dist/; needs nvcc
	$(PYTHON) tools/build_wheel.py --cuda --out dist

test-wheel:         ## build the CPU wheel, install it in a fresh venv outside the tree, run the demo and engine tests there
	rm -rf $(WHEELHOUSE)
	$(PYTHON) tools/build_wheel.py --out $(WHEELHOUSE)
	$(PYTHON) tools/test_wheel.py $(WHEELHOUSE)/himari-*.whl

bench:              ## the core benchmarks (by hand, not a test)
	$(PYTHON) benchmarks/bench_core.py

clean:
	rm -rf build dist *.egg-info
