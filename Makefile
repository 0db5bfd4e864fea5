# Quick start:  make lessons  (run every lesson, write build/lessons/index.html)
#               make test     (run every test)
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PATH := $(abspath $(BIN)):$(PATH)
INSTALLED := $(VENV)/.installed

.PHONY: install lessons test colab-check lab exercises sync release release-check bench clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	@echo "Installing the course's Python packages into $(VENV) (TensorFlow, Keras, JupyterLab, scikit-learn,"
	@echo "OpenCV, ... from requirements.txt, and coursekit itself): about 3 minutes and 3 GB of disk, once."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

lessons: $(INSTALLED)
	@echo "Running every lesson in a fresh kernel, one after the other: about a minute each in the smoke"
	@echo "profile, several in quick and full (build/lessons/index.html shows each one's time)."
	$(PY) -m coursekit.tools.gallery notebooks --out build/lessons

# Unit tests in two processes; lessons one at a time, so that their wall times are honest.
# solutions/ and exercises/ run in tests/test_grade.py: every solution graded at full marks (each of
# its cells ran without an error), every exercise at 0 with exactly its cells tagged raises-exception failing.
test: export COURSEKIT_PROFILE ?= smoke
test: $(INSTALLED)
	@echo "Testing in the $(COURSEKIT_PROFILE) profile: ruff, the unit tests (two processes, a few minutes), then"
	@echo "every lesson notebook one at a time (under a minute each)."
	$(BIN)/ruff check .
	$(PY) -m pytest tests -n 2 --durations=10
	$(PY) -m pytest --nbval-lax notebooks

# Every notebook on Colab's own stack (colab/requirements.txt: Python 3.13, its TensorFlow, Keras,
# numpy, ...), with coursekit installed as the setup cell does; see coursekit/tools/colab_check.py.
# COLAB_NOTEBOOKS="notebooks/*.ipynb exercises/*.ipynb" runs only those (default: all of them);
# COLAB_JOBS notebooks at a time, each in its own kernel.
COLAB_NOTEBOOKS ?=
COLAB_JOBS ?= 2
colab-check: export COURSEKIT_PROFILE ?= smoke
colab-check: $(INSTALLED)
	$(PY) -m coursekit.tools.colab_check --jobs $(COLAB_JOBS) $(COLAB_NOTEBOOKS)

lab: $(INSTALLED)
	$(BIN)/jupyter lab

exercises: $(INSTALLED)
	$(PY) -m coursekit.tools.exercises build

sync: $(INSTALLED)
	$(PY) -m coursekit.tools.course sync

# The students' edition (course.toml's [release]) into build/release, or RELEASE_DIR; release-check
# runs every lesson and exercise of it, with its own coursekit, in the smoke profile.
RELEASE_DIR ?= build/release
release: $(INSTALLED)
	$(PY) -m coursekit.tools.course release $(RELEASE_DIR)

release-check: export COURSEKIT_PROFILE ?= smoke
release-check: release
	cd $(RELEASE_DIR) && PYTHONPATH=. $(abspath $(PY)) -m pytest -p no:cacheprovider --nbval-lax notebooks exercises

bench: $(INSTALLED)
	for script in bench/*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf build outputs .pytest_cache
