# Every target installs what it needs into .venv first (created if missing).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROMPT ?= a red circle moving right on a blue background
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1

.PHONY: install browser demo test wan-fixtures train-spine eval-spine bench experiment-pva experiment-ablations clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# Debian's Chromium and ChromeDriver, which tests/test_ui_browser.py drives (skipped without them
# unless VDM_REQUIRE_BROWSER=1, as .ci/run sets).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "chromium and chromedriver are installed"; \
	else $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; fi

demo: $(STAMP)
	$(VENV)/bin/vdm sample --prompt "$(PROMPT)" --seed 0 --out outputs/demo.mp4 --overwrite

test: $(STAMP)
	$(PY) -m pytest tests -q -p no:cacheprovider -n 2 --durations=25

# Retrains the shipped model from scratch (see README for the time it took) and installs it.
train-spine: $(STAMP)
	$(VENV)/bin/vdm train --config configs/spine.py --workdir workdirs/spine
	rm -rf checkpoints/spine && cp -r workdirs/spine/model checkpoints/spine

eval-spine: $(STAMP)
	$(VENV)/bin/vdm eval adherence --checkpoint checkpoints/spine --num 48 --out outputs/adherence_spine.json

# Every benchmark at its default size; tables print and JSON goes to benchmarks/results/.
bench: $(STAMP)
	for name in sampling autoregressive frames vae_decode train_step post data; do $(PY) -m benchmarks $$name || exit 1; done

# The parallel-vs-autoregressive experiment at small size (trains 3 denoisers; about an hour).
experiment-pva: $(STAMP)
	$(PY) -m experiments.parallel_vs_ar

# The temporal-consistency ablations at small size (about 20 min of training per variant).
experiment-ablations: $(STAMP)
	$(PY) -m experiments.temporal_ablations

# Rebuilds tests/fixtures/wan from the reference implementations (torch, diffusers, transformers
# in a separate venv; vdm's own install never needs them).
wan-fixtures:
	@test -x .venv-parity/bin/python || $(PYTHON) -m venv .venv-parity
	.venv-parity/bin/python -m pip install -q safetensors==0.8.0 sentencepiece==0.2.3 numpy \
	  torch==2.13.0 diffusers==0.42.1 transformers==5.24.0
	.venv-parity/bin/python tools/wan_parity.py --out tests/fixtures/wan

clean:
	rm -rf outputs workdirs .pytest_cache
