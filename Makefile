# Lepton Apps — the two commands of the README, and their helpers.
#   make run   set up .venv, build demo data + models, start the Streamlit hub on http://localhost:8501
#   make test  set up .venv (with test extras) and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8501
# torch/torchvision are installed first as a matching pair; this pair lies on this machine's disk.
# Elsewhere, override it (e.g. TORCH_SPEC="torch torchvision" or a CPU wheel index) or leave the default.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.lepton-installed

.PHONY: run test venv demo ui bench clean help

help:
	@echo "make run   - install into $(VENV), build demo models, start the hub on http://localhost:$(PORT)"
	@echo "make test  - install into $(VENV) with test extras and run the whole test suite"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_SPEC)
	$(PIP) install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/lepton-apps demo

ui: venv
	$(BIN)/lepton-apps ui --port $(PORT)

run: demo
	@echo "Starting the Lepton Apps hub on http://localhost:$(PORT)"
	$(BIN)/lepton-apps ui --port $(PORT)

test: venv
	@bash scripts/ensure_debian.sh chromium "[ -x /usr/bin/chromium ]" "the browser tests"
	@bash scripts/ensure_debian.sh fonts-noto-cjk "[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]" "the Chinese browser test"
	@bash scripts/ensure_debian.sh postgresql "ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1" "the database tests"
	@bash scripts/ensure_debian.sh redis-server "[ -x /usr/bin/redis-server ]" "the shared online-state tests"
	@bash scripts/ensure_debian.sh nginx "[ -x /usr/sbin/nginx ]" "the reverse-proxy (TLS) tests"
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest

bench: venv
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
