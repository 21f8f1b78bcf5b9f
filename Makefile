# Voltbook: `make demo` runs a simulated site, `make test` passes every check, `make test-fast`
# is the inner loop (the same lint and types, the tests that take under a second each).
# Both bootstrap a .venv in the checkout with the project installed editable.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck unit unit-fast bench bench-smoke clean

$(STAMP): pyproject.toml requirements-edge.txt requirements-cloud.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-edge.txt -r requirements-cloud.txt
	$(BIN)/python -m pip install --quiet -e '.[edge,cloud,dev]'
	@# The pages' browser tests (tests/web/) drive Debian's Chromium, never a downloaded one.
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium could not be installed: the browser tests will be skipped"; \
	else echo "chromium is missing and this is not root: run 'apt-get install chromium'" \
		"as root, or the browser tests (tests/web/) are skipped"; fi
	@# `voltbook-fw image` writes the Pi's FAT boot partition with mtools (no root, no mount).
	@if command -v mcopy >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's mtools for voltbook-fw image"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mtools >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mtools >/dev/null; } || \
		echo "mtools could not be installed: the image tests will be skipped"; \
	else echo "mtools is missing and this is not root: run 'apt-get install mtools'" \
		"as root, or tests/voltbook_fw/test_image.py is skipped"; fi
	@# The shipped reverse-proxy config (docs/deploy/nginx-voltbook.conf) is checked with `nginx -t`.
	@if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's nginx-light for the reverse-proxy config test"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		  nginx-light >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq --no-install-recommends nginx-light >/dev/null; } || \
		echo "nginx-light could not be installed: the proxy config test will be skipped"; \
	else echo "nginx is missing and this is not root: run 'apt-get install nginx-light'" \
		"as root, or tests/cloud/test_proxy_config.py is skipped"; fi
	@# `voltbook-cloud backup` on PostgreSQL runs Debian's pgBackRest (tests/cloud/backups).
	@if command -v pgbackrest >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's pgbackrest for the PostgreSQL backups"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest >/dev/null; } || \
		echo "pgbackrest could not be installed: the PostgreSQL backup tests will be skipped"; \
	else echo "pgbackrest is missing and this is not root: run 'apt-get install pgbackrest'" \
		"as root, or tests/cloud/backups/test_pgbackrest.py is skipped"; fi
	@# The hot standby's tests (tests/cloud/standby/) run Debian's Patroni over one etcd.
	@if command -v patroni >/dev/null 2>&1 && command -v etcd >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's patroni and etcd-server for the hot-standby tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			patroni etcd-server >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			patroni etcd-server >/dev/null; } || \
		echo "patroni/etcd-server could not be installed: the hot-standby tests will be skipped"; \
	else echo "patroni or etcd is missing and this is not root: run 'apt-get install patroni" \
		"etcd-server' as root, or tests/cloud/standby/ is skipped"; fi
	@touch $@

demo: $(STAMP)
	$(BIN)/python -m demo --live

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy ledger edge demo

# Test processes: 2 by default (CI's machine has 2 cores); `make test WORKERS=1` runs in one.
WORKERS ?= 2
XDIST   := $(if $(filter 1,$(WORKERS)),,-n $(WORKERS) --dist loadfile)

unit: $(STAMP)
	$(BIN)/pytest -q $(XDIST)

# About a minute: leaves out the tests marked `slow` (subprocesses, real-time waits, long
# property runs) and those that start PostgreSQL or Mosquitto. `make test` still runs them all.
test-fast: lint typecheck unit-fast

unit-fast: $(STAMP)
	$(BIN)/pytest -q $(XDIST) -m "not slow and not postgres and not mosquitto"

bench: $(STAMP)
	@for b in bench/*_bench.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

bench-smoke: $(STAMP)
	@for b in bench/*_bench.py; do echo "== $$b (smoke)"; $(BIN)/python $$b --smoke || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
