# Two commands for a newcomer:  `make book`  and  `make test`.  Each sets up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CHAPTER ?=
PROFILE ?= cpu
DEVICE  ?= cpu
SEED    ?=
GRID    ?=
EXECUTOR ?= local
MAX_PARALLEL ?=
THREADS ?= 1
SLURM_PARTITION ?=
SLURM_GPUS ?=
SLURM_TIME ?= 240
PAGES   ?=
export FORCE            # FORCE=1: lab chapters recompute cached runs instead of loading results/lab/
export CHAPTER PROFILE DEVICE SEED GRID EXECUTOR MAX_PARALLEL THREADS SLURM_PARTITION SLURM_GPUS SLURM_TIME PAGES
# (recipes read these from the environment, quoted, never pasted into the shell line; Python validates them)

.PHONY: book pages-check test test-fast test-smoke mutants lint rerun text sweep gpu-check env clean help
help:
	@echo "make book                                   build the HTML book into _build/html"
	@echo "make pages-check [PAGES='ch0*.html']        the built book as a reader sees it, in headless Chromium at 1280 and"
	@echo "                                            390 px: overflowing tables/equations/code/figures, raw roles, Python"
	@echo "                                            literals and 817.0-style floats in the text -> _build/pages-check.txt"
	@echo "make test                                   run the whole test suite (what CI runs; every notebook executed once)"
	@echo "make test-fast                              the unit tests without the slow ones (about two minutes)"
	@echo "make test-smoke                             every chapter executed in the smoke profile against the ledger"
	@echo "make mutants                                mutation tests of the code that decides verdicts (tools/mutation.py)"
	@echo "make rerun CHAPTER=<name> PROFILE=<smoke|cpu|gpu|full> DEVICE=<cpu|cuda>"
	@echo "                                            re-execute one chapter in place (FORCE=1: recompute cached lab runs)"
	@echo "make text                                   rewrite book/text/*.md, the MyST texts paired with the notebooks"
	@echo "make sweep GRID=grids/<ch>.yaml PROFILE=<p> EXECUTOR=<local|slurm|debug> [MAX_PARALLEL=n THREADS=k"
	@echo "           SLURM_PARTITION=... SLURM_GPUS=n SLURM_TIME=min]  run a chapter's grid of lab runs into results/lab/"
	@echo "make gpu-check                              <= 8 minutes on one GPU: epoch times, curvature on CUDA, chapter smokes"
	@echo "                                            -> benchmarks/results/gpu_check.json and projected gpu/full wall times"

env: $(STAMP)
$(STAMP): requirements.txt benchmarks/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r benchmarks/requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
	touch $(STAMP)

# --all: Sphinx skips copying book/_static (the CSS) when no page changed, so an edited stylesheet would stay stale;
# rendering every page without executing it takes about 15 s. First the generated blocks of book/intro.md and
# book/paper.md (claim count, status table, "Cite this book") are rewritten from claims.yml and CITATION.cff.
book: $(STAMP)
	$(PY) -m poisoncurv.book.glance --root $(CURDIR)
	$(VENV)/bin/jupyter-book build book --all --config $(CURDIR)/_config.yml --toc $(CURDIR)/_toc.yml --path-output . --warningiserror --keep-going
	@echo "Book built: open $(CURDIR)/_build/html/index.html"

# Checks the book `make book` built (it does not rebuild it) and is not part of `make test`: it needs Chromium.
# Standard library only, so it runs without .venv. Exit status 1 when it finds anything (report: _build/pages-check.txt).
pages-check:
	@test -f _build/html/index.html || { echo "pages-check: no built book in _build/html: run \`make book\` first"; exit 2; }
	@test -n "$$CHROMIUM" || command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
	  { echo "pages-check: needs Chromium (on Debian: sudo apt-get install chromium; or CHROMIUM=/path/to/chrome)"; exit 2; }
	$(PYTHON) tools/pages_check.py --html _build/html $${PAGES:+--pages "$$PAGES"}

# --durations: the 15 slowest tests are printed, to watch the suite against its 10-minute target.
# Every notebook is executed once: nbval re-executes the committed chapters (cpu profile, from the cached runs) and
# compares their outputs; the smoke-profile runs of tests/book/test_chapters.py cover only chapters nbval cannot
# execute (committed from a GPU run). `make test-smoke` runs the smoke profile of every chapter.
test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools book
	$(VENV)/bin/mypy
	$(PY) -m pytest tests $$($(PY) -m poisoncurv.book.nbcheck --list) \
	  --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider --durations=15

test-fast: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools book
	$(VENV)/bin/mypy
	$(PY) -m pytest tests -m "not slow" -p no:cacheprovider --durations=10

test-smoke: $(STAMP)
	POISONCURV_SMOKE_ALL=1 $(PY) -m pytest tests/book/test_chapters.py -p no:cacheprovider --durations=10

mutants: $(STAMP)
	$(PY) tools/mutation.py

rerun: $(STAMP)
	@test -n "$$CHAPTER" || (echo "usage: make rerun CHAPTER=<name> PROFILE=<smoke|cpu|gpu|full> DEVICE=<cpu|cuda> [SEED=n]"; exit 2)
	$(PY) -m poisoncurv.book.rerun "$$CHAPTER" --profile "$$PROFILE" --device "$$DEVICE" $${SEED:+--seed "$$SEED"}

# After editing a notebook by hand: its MyST text in book/text/ (jupytext.toml) must follow, or the tests fail.
text: $(STAMP)
	$(PY) -m poisoncurv.book.text_pairs

sweep: $(STAMP)
	@test -n "$$GRID" || (echo "usage: make sweep GRID=grids/<chapter>.yaml PROFILE=<smoke|cpu|gpu|full> EXECUTOR=<local|slurm|debug>"; exit 2)
	$(PY) -m poisoncurv.lab sweep "$$GRID" --profile "$$PROFILE" --executor "$$EXECUTOR" --threads-per-run "$$THREADS" \
	  --slurm-time "$$SLURM_TIME" $${MAX_PARALLEL:+--max-parallel "$$MAX_PARALLEL"} \
	  $${SLURM_PARTITION:+--slurm-partition "$$SLURM_PARTITION"} $${SLURM_GPUS:+--slurm-gpus-per-task "$$SLURM_GPUS"}

gpu-check: $(STAMP)
	PYTHONPATH=$(CURDIR)/src $(PY) -m benchmarks.gpu_check

# mypy type-checks src/poisoncurv with the settings of [tool.mypy] in pyproject.toml (about 25 s from a cold
# .mypy_cache, under a second warm); test and test-fast run it after ruff too.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools book
	$(VENV)/bin/mypy

clean:
	rm -rf _build
