# pvinstall — see README.md.
#   make setup        everything `make test` needs: the three tiers of Debian packages
#                     below (as root; not as root it prints the commands) and the venv
#   make test         everything the README's test command promises (unit + integration)
#   make test-unit    the unit tests: needs the python and oracle tiers, no hypervisor
#   make lint         ruff, mypy --strict: needs the python tier only
#   make check        lint, then test (what CI runs)
#   make bench        speed and memory benchmarks
#   make win2008-virtio WINDOWS_ISO=...   the main job (below; win2003 ... win2025)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Shell words, split on purpose (PYTEST_ARGS='-k floppy -x').
PYTEST_ARGS ?=

# Every variable given on the command line keeps its value exactly as given. make would
# otherwise expand a `$(...)` in it (even `$(shell ...)`) whenever it is referenced or
# exported to a recipe: `$(value ...)` takes the text as it is, `:=` keeps it that way,
# and `export` passes it on to the recipes as make does for command-line variables.
$(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),\
	$(eval override $(v) := $$(value $(v)))$(eval export $(v))))

# Debian packages, in tiers by what needs them. tests/programs.py names the programs and
# files each package provides to the code, the tests and the tools they call, and
# tests/unit/test_programs.py keeps these lists and that table in step.
#
# python: the venv. Debian's python3 needs venv and its headers to build libvirt-python,
# which compiles against libvirt-dev with gcc and pkg-config.
DEBIAN_PYTHON := make python3-venv python3-dev gcc pkg-config libvirt-dev
# oracles: the real tools the tests check pvinstall's output with (virt-xml-validate runs
# xmllint; shfmt parses the .ci scripts for the programs they run; openssl signs the
# fixture catalogs, reads catalogs and certificates back and checks the manifest's keyed
# digests; wimtools makes the fixture DVDs' install.wim and checks the WIM reader,
# udftools reads UDF back; qemu-utils makes the DVD's overlay, which a modern build
# writes, and reads it back; cabextract is what pvinstall itself takes Sysprep out of a
# 2003 CD's DEPLOY.CAB with, gcab makes the fixture cabinets).
DEBIAN_ORACLES := mtools dosfstools genisoimage xorriso libvirt-clients libxml2-utils shfmt \
	openssl wimtools udftools qemu-utils cabextract gcab
# hypervisor: what the integration tests boot guests on (qemu-system-x86 brings its
# firmware, seabios and ipxe-qemu; ovmf the UEFI firmware with Secure Boot, swtpm and
# swtpm-tools the TPM 2.0), what the boot probes are built with (sbsigntool checks the
# Secure Boot probe's signatures), and the sshd on 127.0.0.1 that the remote-host tests
# reach libvirtd through (qemu+ssh; the host side runs libvirt-daemon's virt-ssh-helper).
DEBIAN_HYPERVISOR := qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu \
	libvirt-clients zstd ovmf swtpm swtpm-tools sbsigntool openssh-server
# The 32-bit boot probe (i686 guests) is made of i386 packages fetched by `apt-get
# download` (tests/integration/probe.py): dpkg must know i386 and apt have its lists.
DEBIAN_FOREIGN_ARCHS := i386

.PHONY: setup setup-python setup-oracles setup-hypervisor debian-python libvirtd \
	test test-unit test-integration test-boot check lint bench \
	win2003-virtio win2008-virtio win2008r2-virtio win2012r2-virtio win2016-virtio \
	win2019-virtio win2022-virtio win2025-virtio clean

setup: setup-python setup-oracles setup-hypervisor

setup-python: $(VENV)/.installed

debian-python:
	@./.ci/install-debian-packages $(DEBIAN_PYTHON)

setup-oracles:
	@./.ci/install-debian-packages $(DEBIAN_ORACLES)

setup-hypervisor:
	@./.ci/install-debian-packages --with-lists $(DEBIAN_FOREIGN_ARCHS:%=--foreign-arch %) \
		$(DEBIAN_HYPERVISOR)

$(VENV)/.installed: pyproject.toml | debian-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=77,<82" wheel
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The tests' libvirtd (root only): test-grade settings, see .ci/setup-libvirtd.
libvirtd: setup-hypervisor
	@if [ "$$(id -u)" -eq 0 ]; then ./.ci/setup-libvirtd; fi

# Integration tests must really run their tools here: a skip fails the run.
test: setup libvirtd
	PVTEST_REQUIRE_REAL_TOOLS=1 $(BIN)/pytest $(PYTEST_ARGS)

test-unit: setup-python setup-oracles
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

test-integration: setup libvirtd
	PVTEST_REQUIRE_REAL_TOOLS=1 $(BIN)/pytest -m integration $(PYTEST_ARGS)

test-boot: setup libvirtd
	PVTEST_REQUIRE_REAL_TOOLS=1 $(BIN)/pytest -m boot $(PYTEST_ARGS)

lint: setup-python
	$(BIN)/ruff check builder tests
	$(BIN)/ruff format --check builder tests
	$(BIN)/mypy

# Serial make runs lint first: a lint error stops it before the long test run.
check: lint test

bench: setup
	$(BIN)/python -m tests.bench

# -- the main job: golden images ------------------------------------------------------
# make win2008-virtio WINDOWS_ISO=... [VIRTIO_WIN=...] [CONFIG=...] [OUT=...] [NAME=...]
#                     [CONNECT=...] [DOMAIN_TYPE=...] [TIMEOUT=...] [ARCH=...]
# Without WINDOWS_ISO the media and domain.xml are built and nothing is installed. With
# it, and CONNECT on this machine's qemu:///system, .ci/start-libvirtd first installs
# and starts the system's libvirtd the ordinary way when it is not running.
MAIN_JOB_TARGETS := win2003-virtio win2008-virtio win2008r2-virtio win2012r2-virtio \
	win2016-virtio win2019-virtio win2022-virtio win2025-virtio
MAIN_JOB_VARIABLES := ARCH WINDOWS_ISO VIRTIO_WIN CONFIG OUT NAME CONNECT DOMAIN_TYPE TIMEOUT
CONNECT ?= qemu:///system
# The recipes read these as environment variables ("$$VIRTIO_WIN"), never as text
# pasted into the shell command, so quotes, spaces, `$(...)` and backticks in a value
# reach pvinstall as they are and run nothing.
$(foreach v,$(MAIN_JOB_VARIABLES),$(eval $(MAIN_JOB_TARGETS): export $(v) := $$(value $(v))))

win2003-virtio: setup-python
	@$(call pvinstall_build,win2003,x86)

win2008-virtio: setup-python
	@$(call pvinstall_build,win2008,x64)

win2008r2-virtio: setup-python
	@$(call pvinstall_build,win2008r2,x64)

win2012r2-virtio: setup-python
	@$(call pvinstall_build,win2012r2,x64)

win2016-virtio: setup-python
	@$(call pvinstall_build,win2016,x64)

win2019-virtio: setup-python
	@$(call pvinstall_build,win2019,x64)

win2022-virtio: setup-python
	@$(call pvinstall_build,win2022,x64)

win2025-virtio: setup-python
	@$(call pvinstall_build,win2025,x64)

# $(1) the release, $(2) its default ARCH. The recipe reports pvinstall's own exit code
# (make itself can only exit 2 on failure).
define pvinstall_build
set -- "$(BIN)/pvinstall" build "$(1)-$${ARCH:-$(2)}" --connect "$$CONNECT"; \
[ -z "$$VIRTIO_WIN" ] || set -- "$$@" --drivers "$$VIRTIO_WIN"; \
[ -z "$$CONFIG" ] || set -- "$$@" --config "$$CONFIG"; \
[ -z "$$OUT" ] || set -- "$$@" --out "$$OUT"; \
[ -z "$$NAME" ] || set -- "$$@" --name "$$NAME"; \
[ -z "$$DOMAIN_TYPE" ] || set -- "$$@" --domain-type "$$DOMAIN_TYPE"; \
[ -z "$$TIMEOUT" ] || set -- "$$@" --timeout "$$TIMEOUT"; \
if [ -n "$$WINDOWS_ISO" ]; then \
  ./.ci/start-libvirtd "$$CONNECT" || exit $$?; \
  set -- "$$@" --windows-iso "$$WINDOWS_ISO" --install; \
fi; \
"$$@"; code=$$?; \
if [ $$code -ne 0 ]; then echo "make: pvinstall exited with $$code" >&2; exit $$code; fi; \
if [ -z "$$WINDOWS_ISO" ]; then \
  echo "$(call not_installed_hint,$(1),$@)"; \
fi
endef

# What to do after a build without WINDOWS_ISO ($(1) the release, $(2) the target).
# 2003's domain then has no install CD to boot, and setup from the original CD would need
# F6: only the remastered one is hands-off.
not_installed_hint = $(if $(filter win2003,$(1)),$(hint_remaster),$(hint_install))
hint_remaster = Media are built; setup from the original CD would need F6. For a \
	hands-off install run make $(2) WINDOWS_ISO=/path/to/cd.iso (the CD is remastered so \
	that setup needs no F6).
hint_install = Media and domain.xml are built. To install, run: make $(2) \
	WINDOWS_ISO=/path/to/windows.iso

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache tests/.cache
