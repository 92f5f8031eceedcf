# Two commands do all the set-up: `make reproduce` (embedded default grid) and `make test`.
# Both create or reuse .venv from requirements.lock first.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-lock

.PHONY: venv test test-all reproduce reduced reduced-figures lint bench figures report prune migrate docs

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	cp requirements.lock $(STAMP)

venv: $(STAMP)

# the default suite plus the Slurm integration test (brings up a local cluster; needs root or
# passwordless sudo, skipped otherwise); `make test-all` adds the slow and data-dependent tests
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not gpu"

test-all: $(STAMP)
	$(PY) -m pytest -q -m "not gpu"

reproduce: $(STAMP)
	$(VENV)/bin/snakemake --cores all --profile profiles/default reproduce_table

# real CIFAR-10 at data/cifar10, PreAct-ResNet-20, T = 2/5/10 (config/reduced.yaml; about 80
# minutes on 2 cores); reduced-figures rebuilds its tables and figures from the committed results
reduced: $(STAMP)
	$(VENV)/bin/snakemake --cores all --profile profiles/default reproduce_table \
		--configfile config/reduced.yaml

reduced-figures: $(STAMP)
	$(VENV)/bin/snakemake --profile profiles/figures figures_from_cache \
		--configfile config/reduced.yaml

figures: $(STAMP)
	$(VENV)/bin/snakemake --cores 1 --profile profiles/figures figures_from_cache

report: $(STAMP)
	$(VENV)/bin/snakemake --cores 1 --profile profiles/figures figures_from_cache
	$(VENV)/bin/snakemake --profile profiles/figures --report report.html reproduce_table

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/snakemake --lint

bench: $(STAMP)
	$(PY) -m bench.train_step

# the documentation site (mkdocs.yml, docs/) into site/, git-ignored; --strict: a broken link,
# anchor, included file or API reference fails the build
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# run folders under the results folders of CONFIGS that none of them asks for: listed, removed
# with DELETE=1 (pipeline/runs.py); MIGRATE moves results written before run identity existed
CONFIGS ?= $(wildcard config/*.yaml)
RESULTS ?= results
prune: $(STAMP)
	$(PY) -m pipeline.runs prune $(CONFIGS) $(if $(DELETE),--delete)

migrate: $(STAMP)
	$(PY) -m pipeline.runs migrate $(RESULTS) $(if $(APPLY),--apply)
