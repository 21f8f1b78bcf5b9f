# Voltbook: `make demo` runs a simulated site, `make test` passes every check, `make test-fast`
# is the inner loop (the same lint and types, the tests that take under a second each).
# Both bootstrap a .venv in the checkout with the project installed editable.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck unit unit-fast bench bench-smoke clean

# $(call apt_package,COMMANDS,PACKAGES,WHAT NEEDS THEM): when one of COMMANDS is missing (on
# PATH or in /usr/sbin), install Debian's PACKAGES (apt-get options may lead) if this is root,
# updating the package lists only when the first try fails; otherwise say what is skipped. No
# apt call at all while every command is there. Debian's own, never a downloaded browser/tool.
define apt_package
missing=; for c in $(1); do command -v $$c >/dev/null 2>&1 || [ -x /usr/sbin/$$c ] || \
	missing="$$missing $$c"; done; \
if [ -z "$$missing" ]; then :; \
elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	echo "installing Debian's $(filter-out -%,$(2)) for $(3)"; \
	apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; }; \
	apt_install 2>/dev/null || { apt-get update -qq >/dev/null 2>&1 && apt_install; } || \
	echo "$(filter-out -%,$(2)) could not be installed: $(3) will be skipped"; \
else echo "no$$missing here and this is not root: run 'apt-get install" \
	"$(filter-out -%,$(2))' as root, or $(3) will be skipped"; fi
endef

$(STAMP): pyproject.toml requirements-edge.txt requirements-cloud.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-edge.txt -r requirements-cloud.txt
	$(BIN)/python -m pip install --quiet -e '.[edge,cloud,dev]'
	@# Debian packages the tests and tools need, one line each (see apt_package above).
	@$(call apt_package,chromium,chromium,the browser tests (tests/web/))
	@$(call apt_package,mcopy,mtools,voltbook-fw image (tests/voltbook_fw/test_image.py))
	@$(call apt_package,nginx,--no-install-recommends nginx-light,the reverse-proxy config test (tests/cloud/test_proxy_config.py))
	@$(call apt_package,pgbackrest,pgbackrest,the PostgreSQL backups (tests/cloud/backups/test_pgbackrest.py))
	@$(call apt_package,patroni etcd,--no-install-recommends patroni etcd-server,the hot standby (tests/cloud/standby/))
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
