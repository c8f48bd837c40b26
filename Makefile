# Two commands for a fresh machine (see README):
#   make repro   set up .venv and run the whole DVC pipeline on the embedded synthetic default
#   make test    set up .venv with test tools and run the test suite
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup setup-dev repro test bench mlflow-ui results

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh dev

repro: setup
	dvc repro

# results preset: 3 training seeds on a larger held-out set, paired statistics (see README: results);
# another world: make results ARGS="-S data.seed=7"
results: setup
	python -m pipeline.results.run $(ARGS)

test: setup-dev
	python -m pytest -n 2 --durations=8

bench: setup  # after a `dvc repro` (reads data/raw and reports/<stage>/run.json)
	python -m pipeline.geometry.bench --out reports/bench
	python -m pipeline.bench.pointclouds --raw data/raw --out reports/bench
	python -m pipeline.bench.pointclouds --size 1280x760 --out reports/bench  # SYNTHIA's size, rendered for the bench
	python -m pipeline.bench.stages --out reports/bench
	python -m pipeline.bench.repro --out reports/bench  # default, no-op and smoke dvc repro vs the goals (~6 min)

mlflow-ui:
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000 --workers 1
