# Qri — build, run and test.
#
#   make deps    system packages (Debian) and the Python venv for the integration tests
#   make build   release build: .build/release/qri
#   make certs   development certificate, key and admin token under certs/
#   make run     build, make dev certs, run the gateway in the foreground
#   make run-cluster  the same with a local redis-server and three nodes (config/cluster.yaml)
#   make tour    the README's 60-second tour against the running gateway (brings qri-py into .venv)
#   make send    one message with qri-py: make send PEER=1 CHECKSUM=x MESSAGE='hello'
#   make test    Swift unit tests, a short fuzz, the bench smoke run, the Python integration
#                tests against the release binary (docs/openapi.yaml checked by schemathesis
#                among them), then the admin and ingest paths again against
#                an AddressSanitizer build (leaks and bad accesses fail the test)
#   make fuzz    run the libFuzzer targets for FUZZ_SECONDS each (default 300)
#   make clean   remove build output and test caches (keeps .venv and certs; see distclean)

SHELL        := /bin/bash
.DEFAULT_GOAL := build

PYTHON       ?= python3
VENV         := .venv
VENV_STAMP   := $(VENV)/.deps-stamp
REQUIREMENTS := Tests/integration/requirements.txt
BUILD_PACKAGES := libssl-dev openssl libhiredis-dev libnghttp2-dev pkg-config
APT_PACKAGES := $(BUILD_PACKAGES) curl nghttp2-client chromium faketime redis-server redis-tools
BIN          := .build/release/qri
PYTEST_ARGS  ?=

# apt-get needs root; use sudo when we are not root (developers' laptops).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Prints the packages of $(1) that are not installed.
define missing_packages
for p in $(1); do \
  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q '^install ok installed$$' || echo "$$p"; \
done
endef

.PHONY: deps apt-deps ssl-deps venv-deps qri-py build certs run run-cluster tour send test unit-test integration-test sanitize-test fuzz fuzz-smoke clean distclean

deps: apt-deps venv

# Installs what is missing, and only then runs apt-get update: a second run costs a few dpkg-query calls.
apt-deps:
	@missing="$$($(call missing_packages,$(APT_PACKAGES)))"; \
	if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing" $$missing; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Just what the build needs (for make run).
ssl-deps:
	@missing="$$($(call missing_packages,$(BUILD_PACKAGES)))"; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing" $$missing; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV_STAMP)

# The venv is made once; it is refreshed when the requirements change.
$(VENV_STAMP): $(REQUIREMENTS)
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -r $(REQUIREMENTS)
	@touch $@

# What `python3 -m venv` needs (Debian splits it out as python3-venv).
venv-deps:
	@if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
	  echo "deps: installing python3-venv"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends python3-venv; \
	fi

# qri-py (and what it pulls in) in the venv, at the versions the tests pin: all the tour
# needs, without the test suite's other packages.
qri-py: venv-deps
	@if ! $(VENV)/bin/python -c 'import qri_py' 2>/dev/null; then \
	  [ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV); \
	  $(VENV)/bin/python -m pip install -q $$(grep -E '^(qri-py|pyasn1)==' $(REQUIREMENTS)); \
	fi

# The README's 60-second tour, against the gateway `make run` started (in another terminal).
tour: qri-py
	@bash tools/tour.sh

# One message over the ingest port with qri-py: make send PEER=1 CHECKSUM=x MESSAGE='hello'
PEER     ?= 1
CHECKSUM ?= x
MESSAGE  ?= hello from qri-py
INGEST   ?= 127.0.0.1:5679
send: export SEND_PEER := $(PEER)
send: export SEND_CHECKSUM := $(CHECKSUM)
send: export SEND_MESSAGE := $(MESSAGE)
send: export SEND_INGEST := $(INGEST)
send: qri-py
	@$(VENV)/bin/python tools/send.py

build: ssl-deps
	swift build -c release

certs:
	@bash certs/make-dev-certs.sh

run: ssl-deps build certs
	exec $(BIN) --config config/dev.yaml

run-cluster: ssl-deps build certs
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends redis-server; }
	bash config/run-cluster.sh

test: deps build unit-test fuzz-smoke bench-smoke integration-test sanitize-test

# libFuzzer targets (Tests/Fuzz): `make fuzz` runs each for FUZZ_SECONDS; `make test` runs each
# for 20 s so every CI run fuzzes a little.
FUZZ_SECONDS ?= 300
fuzz: ssl-deps
	Tests/Fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke: ssl-deps
	Tests/Fuzz/run.sh 20

unit-test:
	swift test

integration-test: $(VENV_STAMP)
	@[ -x $(BIN) ] || { echo "test: $(BIN) is missing; run make build" >&2; exit 1; }
	$(VENV)/bin/python -m pytest -q Tests/integration $(PYTEST_ARGS)

# The admin, ingest and exhaustion tests against a debug build with AddressSanitizer and
# LeakSanitizer: each gateway's stderr is checked for a sanitizer report when it stops.
ASAN_BIN       := $(CURDIR)/.build-asan/debug/qri
SANITIZE_TESTS := Tests/integration/test_admin.py Tests/integration/test_ingest.py \
                  Tests/integration/test_exhaustion.py Tests/integration/test_publish_metrics.py \
                  Tests/integration/test_publish_batch.py

sanitize-test: ssl-deps $(VENV_STAMP)
	swift build --sanitize=address --scratch-path .build-asan --product qri
	QRI_TEST_BINARY=$(ASAN_BIN) QRI_TEST_SANITIZER=address ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  $(VENV)/bin/python -m pytest -q $(SANITIZE_TESTS) $(PYTEST_ARGS)

clean:
	rm -rf .build .build-asan .build-fuzz .pytest_cache
	find Tests/integration -name __pycache__ -type d -prune -exec rm -rf {} +

# Also removes the venv and the generated dev certificate, key and token.
distclean: clean
	rm -rf $(VENV)
	rm -f certs/server.crt certs/server.key certs/admin.token

# Benchmarks (issue 5): qri-bench against Qri and, when installed, Nchan; see BENCHMARKS.md.
# Sizes are environment variables, listed at the top of Benchmarks/run.sh.
.PHONY: bench bench-deps bench-build bench-smoke

BENCH_BIN    := .build/release/qri-bench
BENCH_APT    := libnginx-mod-nchan util-linux

# nginx-light (or nginx, if it is the one available) with Debian's Nchan module.
bench-deps: ssl-deps
	@missing="$$($(call missing_packages,$(BENCH_APT)))"; \
	if ! dpkg-query -W -f='$${Status}' nginx-light nginx nginx-core 2>/dev/null | grep -q 'install ok installed'; then \
	  missing="$$missing nginx-light"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "bench-deps: installing" $$missing; \
	  $(SUDO) apt-get update -q && \
	  { DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing || \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $${missing/nginx-light/nginx}; }; \
	fi; \
	if pgrep -x nginx >/dev/null && [ -f /run/nginx.pid ] && [ -z "$$QRI_BENCH_KEEP_NGINX" ]; then \
	  echo "bench-deps: stopping the nginx service the package started"; \
	  $(SUDO) kill -QUIT "$$(cat /run/nginx.pid)" 2>/dev/null || true; \
	fi

bench-build: ssl-deps
	swift build -c release --product qri
	swift build -c release --product qri-bench

bench: bench-deps bench-build certs
	bash Benchmarks/run.sh

# A few hundred streams for a few seconds against a freshly started qri; fails when no
# event is delivered.
bench-smoke: bench-build certs
	bash Benchmarks/smoke.sh
