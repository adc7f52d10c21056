# exhunt developer entry points. Each target creates .venv with pip when it is missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
DEMO    := demo

.PHONY: demo test lint bench venv clean chromium image-tools fuzz bench-fleet bench-zircolite

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,images]'
	@touch $(STAMP)

venv: $(STAMP)

## demo: build a synthetic compromised Exchange server and scan it (expects a COMPROMISED verdict)
demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/exhunt synth $(DEMO)/EXCH01-triage --seed 7 --users 40 --days 14
	$(BIN)/exhunt scan $(DEMO)/EXCH01-triage --json $(DEMO)/report.json --out html=$(DEMO)/report.html --case $(DEMO)/case.duckdb; \
	  rc=$$?; test $$rc -eq 1 || { echo "demo: expected exit 1 (COMPROMISED), got $$rc"; exit 1; }
	@echo
	@echo "Report: $(DEMO)/report.html ($(DEMO)/report.json)   Case database: $(DEMO)/case.duckdb"
	@echo "Try:    $(BIN)/exhunt query $(DEMO)/case.duckdb \"SELECT severity, rule, count, first_seen FROM findings\""

## image-tools: Debian's ntfs-3g, qemu-img, sfdisk and ewfacquire, which the disk-image tests build images with
IMAGE_TOOLS := mkntfs ntfs-3g qemu-img sfdisk ewfacquire
image-tools:
	@PATH="$$PATH:/usr/sbin:/sbin"; for t in $(IMAGE_TOOLS); do command -v $$t >/dev/null || missing=1; done; \
	  test -z "$$missing" || { apt-get update -qq && apt-get install -y -qq ntfs-3g qemu-utils fdisk ewf-tools >/dev/null; } \
	  || echo "make: could not install the disk-image tools: the image tests will skip" >&2

## test: the whole suite (unit, property, end-to-end); about a minute on 2 cores
test: $(STAMP) chromium image-tools
	@$(BIN)/python -m pytest -n 2 -p no:cacheprovider --durations=15; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; exit 1; fi; exit $$rc

## chromium: Debian's headless browser for the HTML report tests (never a browser download)
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || echo "make: could not install chromium with apt; the browser tests will be skipped" >&2

## fuzz: the property tests with a large hypothesis budget (FUZZ_EXAMPLES, default 2000 each), readers
## included; an input that breaks a check is kept under fuzz-findings/ with its traceback
fuzz: $(STAMP)
	FUZZ=1 $(BIN)/python -m pytest -n 2 -p no:cacheprovider tests/fuzz

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## bench: throughput and peak memory on a ~1 GB synthetic collection (cached in bench-data/), then the
## size of its HTML report and the time chromium takes to show it
bench: $(STAMP) chromium image-tools
	@command -v rg >/dev/null && test -x /usr/bin/time || { apt-get update -qq && apt-get install -y -qq ripgrep time hyperfine; }
	$(BIN)/python bench/run.py
	$(BIN)/python bench/analytics_cost.py bench-data/collection-1000mb-s11
	$(BIN)/python bench/report.py
	$(BIN)/python bench/images.py
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/sigma_events.py
	$(BIN)/python bench/export_shapes.py
	$(BIN)/python bench/event_processes.py
	$(BIN)/python bench/event_processes.py --files 1

## bench-zircolite: Sigma on events against Zircolite on the same flat JSON lines, in the same run;
## ZIRCOLITE=DIR names a checkout of https://github.com/wagga40/Zircolite, installed into a virtual
## environment of its own under bench-data/ (never into exhunt's)
bench-zircolite: $(STAMP)
	@test -n "$(ZIRCOLITE)" || { echo "make bench-zircolite ZIRCOLITE=/path/to/Zircolite checkout"; exit 2; }
	test -x bench-data/zircolite-venv/bin/python || { python3 -m venv bench-data/zircolite-venv && \
		bench-data/zircolite-venv/bin/pip install -q -r $(ZIRCOLITE)/requirements.txt; }
	$(BIN)/python bench/zircolite.py --zircolite $(ZIRCOLITE) --python bench-data/zircolite-venv/bin/python

## bench-fleet: 50 tiny servers on dask.distributed: hosts/minute and MB/s for 1 and 2 workers, incremental rerun
bench-fleet: $(STAMP)
	$(BIN)/python bench/fleet.py

clean:
	rm -rf $(DEMO) bench-data .pytest_cache
