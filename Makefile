# advhash: two commands on a fresh machine.
#   make repro   set up the environment and data, then regenerate every result with `dvc repro` (two stages at a
#                time where they are independent; LANES=1: one at a time)
#   make test    set up the environment and data, then run the library tests and nbval on the notebooks
#   make dry S="section.key=value ..."   which stages a parameter change reruns (a DVC dry experiment)
#   make report  the executed notebooks as one static HTML site in site/ (summary page and one page per section)
#   make findings   every claim of the papers with its verdict (metrics/NN_findings.json) as one table in the
#                   terminal (120 columns), then the data, budget, profile, commit and date they come from
#   make notebooks   rebuild notebooks/NN_name.ipynb from their notebooks/NN_name.py sources (after an edit;
#                    `make test` does not rebuild them, a test fails while one is stale)
#   make mutants   mutation testing (mutmut) of the modules whose bugs a user would not see, against their fast
#                  tests; not in CI (about an hour on one core); the survivors: build/mutmut/, `mutmut results`
#
# The environment is a virtual environment in .venv (python3 >= 3.11); conda users can instead
# `conda env create -f environment.yml`, activate it and run with VENV=$CONDA_PREFIX (setup then only
# installs advhash into the active environment, with the same pins).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# absolute, so that PATH works for a relative or an absolute VENV (e.g. VENV=$CONDA_PREFIX)
BIN_PATH := $(abspath $(BIN))
DATA_ROOT ?= data
DEFAULT_DATASETS ?= fashion-mnist fashion-mosaic
FASHION_MNIST_DEB := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PYTHONHASHSEED := 0

.PHONY: setup fashion-mnist data repro test dry report findings notebooks mutants bench clean-outputs

setup: $(BIN)/.advhash-installed

$(BIN)/.advhash-installed: pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# The real Fashion-MNIST from Debian's dataset-fashion-mnist where apt is available; elsewhere the
# loader falls back to torchvision's download.
fashion-mnist:
	@if [ ! -d $(FASHION_MNIST_DEB) ] && command -v apt-get >/dev/null 2>&1; then \
	  $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null 2>&1 && $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
	  echo "could not install dataset-fashion-mnist; the loader will try torchvision's download"; \
	fi

data: setup fashion-mnist
	$(BIN)/python -m advhash.data materialize $(DEFAULT_DATASETS) --root $(DATA_ROOT)

# `make repro` runs the stages in two lanes side by side (small models keep about one core each busy): lane 0 runs
# cmla, which needs no other stage; lane 1 runs deep_hashing, then saat and cgat, which need it. hag needs
# deep_hashing too and goes to whichever lane is free first (it claims it with an atomic mkdir): lane 0 on a fresh
# clone, where cmla's training is the shorter lane's, lane 1 when the checkpoints are kept, where cmla's evaluation
# is the longer. Then a plain `dvc repro` finds nothing left (or runs whatever a lane could not). Every stage's torch
# thread count is fixed by pipeline.threads, so its numbers are the ones a sequential run gives. LANES=1: plain
# `dvc repro`, one stage at a time (e.g. on a GPU, where two stages would share it).
LANES ?= 2
DVC := PATH=$(BIN_PATH):$$PATH $(BIN)/dvc --wait-for-lock
CLAIM := build/locks/hag.claimed

repro: data
ifeq ($(LANES),1)
	$(DVC) repro
else
	@mkdir -p build/locks && rm -rf $(CLAIM)
	hag() { mkdir $(CLAIM) 2>/dev/null || return 0; ADVHASH_LANE=$$1 $(DVC) repro --single-item hag; }; \
	  ( export ADVHASH_LANE=0; $(DVC) repro --single-item cmla ) & cmla=$$!; \
	  export ADVHASH_LANE=1; $(DVC) repro --single-item deep_hashing || { wait $$cmla; exit 1; }; \
	  ( $(DVC) repro --single-item saat && $(DVC) repro --single-item cgat && hag 1 ) & defenses=$$!; \
	  wait $$cmla && hag 0; lane0=$$?; wait $$defenses; lane1=$$?; rm -rf $(CLAIM); \
	  [ $$lane0 = 0 ] && [ $$lane1 = 0 ]
	$(DVC) repro
endif

test: data
	PATH=$(BIN_PATH):$$PATH $(BIN)/python -m pytest

# A dry run of an experiment: which stages a parameter change reruns, nothing run. Example:
#   make dry S="deep_hashing.epochs=20 saat.eps_255=4"
# One value per setting, no spaces inside one (a sweep, x=4,16, needs `dvc exp run --queue`). dvc runs it in a
# temporary copy of the project that lacks the data and checkpoints (DVC leaves them out of a dry run), so they
# are copied in (-C; the stages read the folder data/); a stage downstream of a rerun one reruns too, though
# listed as unchanged.
dry: data
	PATH=$(BIN_PATH):$$PATH $(BIN)/dvc exp run --dry -C data \
	  $(foreach folder,$(wildcard checkpoints/*/),-C $(folder:/=)) $(foreach setting,$(S),-S $(setting))

# The executed notebooks as one static site: site/index.html (summary page) and one page per section.
report: setup
	$(BIN)/python tools/report_site.py

# Every finding of the five sections in a terminal (advhash.overview; the README's "Results at a glance" is the
# same table: `python -m advhash.overview --readme` rewrites it).
findings: setup
	$(BIN)/python -m advhash.overview

notebooks: setup
	$(BIN)/python -m advhash.pipeline build

# Mutation testing ([tool.mutmut] in pyproject.toml: which modules, which tests) in build/mutmut/, whose src/,
# tests/ and pyproject.toml link to the project's: mutmut 3 copies them into build/mutmut/mutants/ and mutates the
# copies, never lib/. A rerun tests again only the mutants whose function or tests changed. One child on one
# thread: MUTANT_CHILDREN=4 where cores are free. `cd build/mutmut && mutmut show <name>` shows a mutant's diff
# (never `mutmut apply`: it writes the mutant into lib/).
MUTMUT_DIR := build/mutmut
MUTANT_CHILDREN ?= 1

mutants: setup
	mkdir -p $(MUTMUT_DIR)
	ln -sfn ../../lib $(MUTMUT_DIR)/src
	ln -sfn ../../tests $(MUTMUT_DIR)/tests
	ln -sfn ../../pyproject.toml $(MUTMUT_DIR)/pyproject.toml
	cd $(MUTMUT_DIR) && OMP_NUM_THREADS=1 $(BIN_PATH)/mutmut run --max-children $(MUTANT_CHILDREN)
	cd $(MUTMUT_DIR) && $(BIN_PATH)/mutmut results

bench: setup
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_attacks.py
	$(BIN)/python benchmarks/bench_defenses.py
	$(BIN)/python benchmarks/bench_robustness.py
	$(BIN)/python benchmarks/bench_paper_scale.py

clean-outputs:
	rm -rf build
