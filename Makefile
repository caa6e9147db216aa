# pvinstall — see README.md.
#   make setup   venv + Python packages; as root also the Debian packages
#   make test    everything the README's test command promises (unit + integration)
#   make check   ruff, mypy --strict, pytest
#   make bench   speed and memory benchmarks

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

# Debian packages: building libvirt-python, the tools the tests use as oracles and
# pvinstall uses at run time, and the hypervisor stack the integration tests boot.
DEBIAN_PACKAGES := python3-venv python3-dev gcc pkg-config libvirt-dev \
	mtools dosfstools genisoimage xorriso \
	qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
# Foreign dpkg architectures with package lists: the 32-bit boot probe (i686 guests)
# is built from i386 packages fetched by `apt-get download` (tests/integration/probe.py).
DEBIAN_FOREIGN_ARCHS := i386

.PHONY: setup debian-packages libvirtd test test-unit test-integration test-boot check lint bench \
	win2003-virtio win2008-virtio win2008r2-virtio clean

setup: debian-packages $(VENV)/.installed

debian-packages:
	@./.ci/install-debian-packages $(DEBIAN_FOREIGN_ARCHS:%=--foreign-arch %) $(DEBIAN_PACKAGES)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=77,<82" wheel
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# libvirtd without systemd, for the integration tests that boot guests (root only).
libvirtd:
	@if [ "$$(id -u)" -eq 0 ]; then ./.ci/setup-libvirtd; fi

# Integration tests must really run their tools here: a skip fails the run.
test: setup libvirtd
	PVTEST_REQUIRE_REAL_TOOLS=1 $(BIN)/pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

test-integration: setup libvirtd
	PVTEST_REQUIRE_REAL_TOOLS=1 $(BIN)/pytest -m integration $(PYTEST_ARGS)

test-boot: setup libvirtd
	PVTEST_REQUIRE_REAL_TOOLS=1 $(BIN)/pytest -m boot $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check builder tests
	$(BIN)/ruff format --check builder tests
	$(BIN)/mypy

check: lint test

bench: setup
	$(BIN)/python -m tests.bench

# -- the main job: golden images ------------------------------------------------------
# make win2008-virtio WINDOWS_ISO=... [VIRTIO_WIN=...] [CONFIG=...] [OUT=...] [CONNECT=...]
# Without WINDOWS_ISO the media and domain.xml are built and nothing is installed.
ARCH ?=
WINDOWS_ISO ?=
VIRTIO_WIN ?=
CONFIG ?=
OUT ?=
NAME ?=
CONNECT ?= qemu:///system
DOMAIN_TYPE ?=
TIMEOUT ?=

win2003-virtio: setup
	@$(call pvinstall_build,win2003-$(or $(ARCH),x86))

win2008-virtio: setup
	@$(call pvinstall_build,win2008-$(or $(ARCH),x64))

win2008r2-virtio: setup
	@$(call pvinstall_build,win2008r2-$(or $(ARCH),x64))

# The recipe reports pvinstall's own exit code (make itself can only exit 2 on failure).
define pvinstall_build
set -- $(BIN)/pvinstall build "$(1)" --connect "$(CONNECT)"; \
[ -n "$(VIRTIO_WIN)" ] && set -- "$$@" --drivers "$(VIRTIO_WIN)"; \
[ -n "$(CONFIG)" ] && set -- "$$@" --config "$(CONFIG)"; \
[ -n "$(OUT)" ] && set -- "$$@" --out "$(OUT)"; \
[ -n "$(NAME)" ] && set -- "$$@" --name "$(NAME)"; \
[ -n "$(DOMAIN_TYPE)" ] && set -- "$$@" --domain-type "$(DOMAIN_TYPE)"; \
[ -n "$(TIMEOUT)" ] && set -- "$$@" --timeout "$(TIMEOUT)"; \
[ -n "$(WINDOWS_ISO)" ] && set -- "$$@" --windows-iso "$(WINDOWS_ISO)" --install; \
"$$@"; code=$$?; \
if [ $$code -ne 0 ]; then echo "make: pvinstall exited with $$code" >&2; exit $$code; fi; \
if [ -z "$(WINDOWS_ISO)" ]; then \
  echo "Media and domain.xml are built. To install, run: make $@ WINDOWS_ISO=/path/to/windows.iso"; \
fi
endef

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache tests/.cache
