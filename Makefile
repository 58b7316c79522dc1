# Keyward - one Makefile.  `make` builds build/keywardd and build/keywardctl.
# See README.md for `make run` and `make test`.

SHELL := /bin/bash
.DEFAULT_GOAL := all

CC      ?= gcc
# `make Q=` shows the full compiler commands
Q       ?= @
CLANG   ?= clang
BUILD   := build
# zlib: the key-use audit's batches and its gzip exports (server/custody/audit_codec.c,
# audit_export.c)
# libargon2: console users' password hashes (server/custody/password.c)
# libpq: the fleet's key store on PostgreSQL (server/custody/pgstore*.c)
PKGS    := openssl libcjson sqlcipher p11-kit-1 tss2-esys tss2-mu tss2-tctildr tss2-rc libseccomp zlib \
           libargon2 libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes \
           -Wmissing-prototypes -Wimplicit-fallthrough
HARDEN  := -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fstack-clash-protection -fPIE
LDHARD  := -pie -Wl,-z,relro,-z,now,-z,noexecstack
CFLAGS  ?= -O2 -g
ALL_CFLAGS = $(CFLAGS) -ffile-prefix-map=$(CURDIR)=. $(WARN) $(HARDEN) -D_GNU_SOURCE -DKEYWARD_VERSION='"$(VERSION)"' -Iserver -I$(CW_INC) $(PKG_CFLAGS) -pthread
ALL_LDFLAGS = $(LDHARD) -pthread

# Sanitizer build of the library and unit tests (make test runs both).
SAN_CFLAGS  = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
              $(WARN) -D_GNU_SOURCE -DKEYWARD_VERSION='"$(VERSION)"' -Iserver -I$(CW_INC) $(PKG_CFLAGS) -pthread
SAN_LDFLAGS = -fsanitize=address,undefined -pthread

# ---- CivetWeb 1.15 from Debian's own source package (never committed) ----
# Debian's libcivetweb dlopen()s OpenSSL with the 1.1 symbol table and cannot
# start TLS against OpenSSL 3; built here with OPENSSL_API_3_0 and NO_SSL_DL.
CW_SRC  := $(BUILD)/civetweb-src
CW_INC  := $(CW_SRC)/include
CW_DEFS := -DOPENSSL_API_3_0 -DNO_SSL_DL -DNO_CGI -DUSE_IPV6 -DNDEBUG -DSOCKET_TIMEOUT_QUANTUM=200
$(CW_SRC)/.stamp:
	@mkdir -p $(BUILD)/civetweb-get
	@if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	  echo "deb-src is not enabled: run 'make deps' (as root) first" >&2; exit 1; fi
	cd $(BUILD)/civetweb-get && apt-get source --download-only civetweb >/dev/null 2>&1 || \
	  (apt-get update -qq >/dev/null && apt-get source --download-only civetweb >/dev/null)
	rm -rf $(CW_SRC) && mkdir -p $(CW_SRC)
	cd $(BUILD)/civetweb-get && dpkg-source -x --skip-patches civetweb_*.dsc src >/dev/null && \
	  cp -r src/src src/include ../civetweb-src/ && rm -rf src
	@test -f $(CW_SRC)/src/civetweb.c
	@touch $@
$(BUILD)/obj/civetweb.o: $(CW_SRC)/.stamp Makefile
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -w -fPIE -fstack-protector-strong -D_FORTIFY_SOURCE=2 $(CW_DEFS) -I$(CW_INC) -c $(CW_SRC)/src/civetweb.c -o $@
$(BUILD)/san/civetweb.o: $(CW_SRC)/.stamp Makefile
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -w -fsanitize=address,undefined -fno-omit-frame-pointer $(CW_DEFS) -I$(CW_INC) -c $(CW_SRC)/src/civetweb.c -o $@

# ---- sources ----
LIB_SRCS  := $(filter-out %_test.c,$(wildcard server/common/*.c server/custody/*.c server/front/*.c attest/collect/*.c)) server/config.c \
             attest/verify/snp_report.c
TEST_SRCS := $(wildcard server/*_test.c server/*/*_test.c)
VERSION   := 0.1.0
CTL_SRCS  := $(filter-out %_test.c,$(wildcard server/ctl/*.c))
HEADERS   := $(wildcard server/*.h server/*/*.h)
# what runs in the VM around the server (keyward-unlock): adds to the lists above
include appliance/appliance.mk
include provisioning/provisioning.mk
include image/image.mk
include tests/image/static.mk
include tests/image/boot.mk
-include tests/fleet/fleet.mk
# the web console (server/ui/, docs/console.md): its files compiled into
# keywardd as one generated C file (never committed), part of the library
UI_FILES  := $(sort $(wildcard server/ui/*.html server/ui/*.css server/ui/*.js server/ui/*.svg))
UI_GEN    := $(BUILD)/gen/ui_assets.c
LIB_SRCS  += $(UI_GEN)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
SAN_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/san/%.o)
TESTS     := $(patsubst %_test.c,$(BUILD)/test/%_test,$(notdir $(TEST_SRCS)))
SAN_TESTS := $(patsubst %_test.c,$(BUILD)/santest/%_test,$(notdir $(TEST_SRCS)))

vpath %_test.c server server/common server/custody server/front server/ctl

$(BUILD)/obj/%.o: %.c $(HEADERS) $(CW_SRC)/.stamp
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/san/%.o: %.c $(HEADERS) $(CW_SRC)/.stamp
	@mkdir -p $(dir $@)
	@echo "  CC-SAN  $<"
	$(Q)$(CC) $(SAN_CFLAGS) -c $< -o $@

$(BUILD)/ui-embed: server/ui_embed.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) $(HARDEN) -D_GNU_SOURCE $< $(LDHARD) $(shell pkg-config --libs libcrypto) -o $@
$(UI_GEN): $(BUILD)/ui-embed $(UI_FILES)
	@mkdir -p $(dir $@)
	@echo "  EMBED   $(words $(UI_FILES)) files of server/ui/"
	$(Q)$(BUILD)/ui-embed $@ $(UI_FILES)

$(BUILD)/libkeyward.a: $(LIB_OBJS) $(BUILD)/obj/civetweb.o
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/libkeyward-san.a: $(SAN_OBJS) $(BUILD)/san/civetweb.o
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/keywardd: server/main.c $(BUILD)/libkeyward.a
	$(CC) $(ALL_CFLAGS) $< $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(PKG_LIBS) -ldl -o $@
$(BUILD)/keywardctl: $(CTL_SRCS) $(BUILD)/libkeyward.a
	$(CC) $(ALL_CFLAGS) $(CTL_SRCS) $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(PKG_LIBS) -lcurl -o $@

# Test-only tool: prints the unsealed database key (hex) of a development state,
# so black-box tests can tamper with the database as an attacker holding the key would.
$(BUILD)/kw-test-dbkey: tests/tools/dbkey.c $(BUILD)/libkeyward.a
	$(CC) $(ALL_CFLAGS) $< $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(PKG_LIBS) -ldl -o $@

# Test-only LD_PRELOAD shim: a fake /dev/sev-guest answering SNP_GET_DERIVED_KEY
# for keyward-unlock's SEV-SNP binding (no SEV-SNP guest can run here).
$(BUILD)/libfakesevguest.so: tests/tools/fake_sev_guest.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -D_GNU_SOURCE -fPIC -shared $< -ldl -lcrypto -o $@

# Fault-injecting PKCS#11 module (wraps a real SoftHSM2) for the HSM tests.
$(BUILD)/libfaulthsm.so: tests/faulthsm/faulthsm.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -D_GNU_SOURCE $(PKG_CFLAGS) -fPIC -shared $< -ldl -pthread -o $@

$(BUILD)/test/%_test: %_test.c $(BUILD)/libkeyward.a $(BUILD)/libfaulthsm.so
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(ALL_CFLAGS) $< $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(PKG_LIBS) -lcmocka -ldl -o $@
$(BUILD)/santest/%_test: %_test.c $(BUILD)/libkeyward-san.a $(BUILD)/libfaulthsm.so
	@mkdir -p $(dir $@)
	@echo "  TEST-SAN $@"
	$(Q)$(CC) $(SAN_CFLAGS) $< $(BUILD)/libkeyward-san.a $(SAN_LDFLAGS) $(PKG_LIBS) -lcmocka -ldl -o $@

# reqhead_test includes CivetWeb's civetweb.c (unmodified) to parse heads with
# CivetWeb's own parser: built with CivetWeb's -D options, warnings off (-w)
$(BUILD)/test/reqhead_test: server/front/reqhead_test.c $(BUILD)/libkeyward.a
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(CW_DEFS) -I$(CW_SRC)/src -w $< $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(PKG_LIBS) -lcmocka -ldl -o $@
$(BUILD)/santest/reqhead_test: server/front/reqhead_test.c $(BUILD)/libkeyward-san.a
	@mkdir -p $(dir $@)
	@echo "  TEST-SAN $@"
	$(Q)$(CC) $(SAN_CFLAGS) $(CW_DEFS) -I$(CW_SRC)/src -w $< $(BUILD)/libkeyward-san.a $(SAN_LDFLAGS) $(PKG_LIBS) -lcmocka -ldl -o $@

.PHONY: all deps deps-check users run test test-suites unit unit-san blackbox test-console lint fuzz fuzz-short clean check-hardening
all: $(BUILD)/keywardd $(BUILD)/keywardctl $(BUILD)/libfaulthsm.so
test-tools: $(BUILD)/kw-test-dbkey $(BUILD)/libfakesevguest.so

# Parts owned by other directories (attestation library and verifier CLI).
-include attest/attest.mk

# ---- dependencies (Debian 12, as root; idempotent) ----
DEB_PKGS := build-essential pkg-config dpkg-dev ca-certificates curl openssl libssl-dev \
            libcjson-dev libsqlcipher-dev sqlcipher libp11-kit-dev p11-kit softhsm2 \
            libcurl4-openssl-dev libcmocka-dev clang libclang-rt-14-dev cppcheck \
            python3-pytest python3-requests python3-botocore python3-cryptography \
            libtss2-dev tpm2-tools swtpm swtpm-tools libmbedtls-dev gdb procps binutils \
            libseccomp-dev passwd acl util-linux zlib1g-dev \
            cryptsetup-bin libcryptsetup-dev systemd libargon2-dev chromium \
            libpq-dev postgresql
# the console's browser tests (tests/console) run playwright-core under Node.js:
# Debian's nodejs and npm, installed only when there is no node at all (a newer
# Node.js installed otherwise is kept)
NODE_PKGS := nodejs npm
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing="$$missing $(NODE_PKGS)"; fi; \
	if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	  echo "enabling deb-src (for CivetWeb's source package)"; \
	  if [ -f /etc/apt/sources.list.d/debian.sources ]; then \
	    sed 's/^Types: deb$$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > /etc/apt/sources.list.d/keyward-deb-src.sources; \
	  else grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > /etc/apt/sources.list.d/keyward-deb-src.list; fi; \
	  need_update=1; fi; \
	if [ -n "$$missing" ] || [ -n "$$need_update" ]; then apt-get update -q; fi; \
	if [ -n "$$missing" ]; then echo "installing:" $$missing; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi
	@echo "dependencies: ok"

# The two system users of the privilege-separated layout (docs/threat-model.md):
# keyward-custody owns the key store, the HSM PIN and token files; keyward-front
# runs the network front.  Created when keywardd will be started as root.
KW_USERS := keyward-custody keyward-front
users:
	@if [ "$$(id -u)" = 0 ]; then for u in $(KW_USERS); do \
	  id -u $$u >/dev/null 2>&1 || { useradd --system --no-create-home --home-dir /nonexistent \
	    --shell /usr/sbin/nologin --user-group $$u && echo "created system user $$u"; }; done; \
	  if getent group tss >/dev/null && ! id -nG keyward-custody | grep -qw tss; then \
	    usermod -a -G tss keyward-custody; fi; fi

deps-check:
	@for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || exit 1; done; \
	command -v node >/dev/null && command -v npm >/dev/null && \
	grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/

# ---- run a development instance under ./var ----
run:
	@$(MAKE) -s deps-check 2>/dev/null || $(MAKE) deps
	@$(MAKE) --no-print-directory users all
	@tests/devstate.sh ./var 9998
	@echo; echo "Keyward (development state in ./var) on https://127.0.0.1:9998"; \
	echo "  admin token: ./var/admin.token (written on first start); TLS certificate: ./var/tls/cert.pem"; \
	echo "  try, in another shell:"; \
	echo "    KEYWARD_TOKEN_FILE=var/admin.token KEYWARD_CACERT=var/tls/cert.pem build/keywardctl key create demo --type aes"; \
	echo "    curl --cacert var/tls/cert.pem -H \"Authorization: Bearer \$$(cat var/admin.token)\" https://127.0.0.1:9998/api/v1/keys"; echo
	SOFTHSM2_CONF=$(CURDIR)/var/softhsm/softhsm2.conf exec $(BUILD)/keywardd --config ./var/keyward.toml

# ---- tests ----
# Unit tests run under tests/fleet/pg.sh: a throw-away PostgreSQL (KW_TEST_PG...)
# for pgstore's tests, stopped and removed when the loop ends.
unit: $(TESTS)
	@tests/fleet/pg.sh bash -c 'set -e; for t in $(TESTS); do echo "== $$t"; \
	  KW_SRCDIR=$(CURDIR) KW_BUILD=$(abspath $(BUILD)) $$t; done'
unit-san: $(SAN_TESTS)
	@tests/fleet/pg.sh bash -c 'set -e; for t in $(SAN_TESTS); do echo "== $$t (ASan+UBSan)"; \
	  KW_SRCDIR=$(CURDIR) KW_BUILD=$(abspath $(BUILD)) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1 $$t; done'
blackbox: all test-tools
	cd tests/blackbox && KEYWARD_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q -x -p no:cacheprovider .
# The web console in a real browser (tests/console: playwright-core, pinned in
# package-lock.json, driving Debian's /usr/bin/chromium; never a downloaded
# browser).  node_modules is (re)installed with `npm ci` when it is missing or
# older than the lock file; screenshots go to build/artefacts/console/.
CONSOLE_TESTS := tests/console
$(CONSOLE_TESTS)/node_modules/.installed: $(CONSOLE_TESTS)/package-lock.json $(CONSOLE_TESTS)/package.json
	cd $(CONSOLE_TESTS) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts
	@touch $@
test-console: all $(CONSOLE_TESTS)/node_modules/.installed
	@test -x /usr/bin/chromium || { echo "test-console: /usr/bin/chromium is missing: make deps (as root)" >&2; exit 1; }
	cd $(CONSOLE_TESTS) && KEYWARD_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q -p no:cacheprovider test_console.py
lint:
	@tests/lint.sh
check-hardening: $(BUILD)/keywardd $(BUILD)/keywardctl $(BUILD)/keyward-unlock $(BUILD)/keyward-provision
	@tests/check-hardening.sh $(BUILD)/keywardd $(BUILD)/keywardctl $(BUILD)/keyward-unlock $(BUILD)/keyward-provision

FUZZ_SRCS := $(wildcard tests/fuzz/*_fuzz.c)
FUZZERS   := $(patsubst tests/fuzz/%_fuzz.c,$(BUILD)/fuzz/%_fuzz,$(FUZZ_SRCS))
# Library objects for the fuzzers, instrumented; linked from an archive so a
# target pulls in only what it uses.
FUZZ_OBJS := $(LIB_SRCS:%.c=$(BUILD)/fuzzobj/%.o)
FUZZ_CFLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -D_GNU_SOURCE -DKW_FUZZ \
              -DKEYWARD_VERSION='"$(VERSION)"' \
              -Iserver -I$(CW_INC) $(PKG_CFLAGS) -pthread
$(BUILD)/fuzzobj/%.o: %.c $(HEADERS) $(CW_SRC)/.stamp
	@mkdir -p $(dir $@)
	@echo "  CC-FUZZ $<"
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(BUILD)/fuzzobj/civetweb.o: $(CW_SRC)/.stamp Makefile
	@mkdir -p $(dir $@)
	$(Q)$(CLANG) -O1 -g -w -fsanitize=address,undefined $(CW_DEFS) -I$(CW_INC) -c $(CW_SRC)/src/civetweb.c -o $@
$(BUILD)/libkeyward-fuzz.a: $(FUZZ_OBJS) $(BUILD)/fuzzobj/civetweb.o
	@rm -f $@
	$(Q)ar rcs $@ $^
$(BUILD)/fuzz/%_fuzz: tests/fuzz/%_fuzz.c $(BUILD)/libkeyward-fuzz.a
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(BUILD)/libkeyward-fuzz.a $(PKG_LIBS) -ldl -o $@
# reqhead_fuzz includes CivetWeb's civetweb.c (unmodified) to run its parser
$(BUILD)/fuzz/reqhead_fuzz: tests/fuzz/reqhead_fuzz.c $(BUILD)/libkeyward-fuzz.a
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $(CW_DEFS) -I$(CW_SRC)/src -w -fsanitize=fuzzer $< $(BUILD)/libkeyward-fuzz.a $(PKG_LIBS) -ldl -o $@
FUZZ_SECONDS ?= 300
# make test's short run: 12 s each, two at a time (the two cores; longer runs: make fuzz); a finding
# (a crash, a leak, a timeout) fails it, with the end of that fuzzer's log
FUZZ_SHORT_SECONDS ?= 12
fuzz-short: $(FUZZERS)
	@printf '%s\n' $(FUZZERS) | xargs -P 2 -I{} sh -c 'n=$$(basename {}); mkdir -p $(BUILD)/corpus/$$n; \
	  if {} -max_total_time=$(FUZZ_SHORT_SECONDS) -timeout=5 -rss_limit_mb=2048 $(BUILD)/corpus/$$n \
	     tests/fuzz/corpus/$$n > $(BUILD)/corpus/$$n.log 2>&1; \
	  then echo "== $$n ($(FUZZ_SHORT_SECONDS) s): $$(tail -1 $(BUILD)/corpus/$$n.log)"; \
	  else echo "== $$n: FAILED"; tail -40 $(BUILD)/corpus/$$n.log; exit 1; fi'
fuzz: $(FUZZERS)
	@set -e; for f in $(FUZZERS); do n=$$(basename $$f); mkdir -p $(BUILD)/corpus/$$n; \
	  echo "== $$n ($(FUZZ_SECONDS) s)"; $$f -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 $(BUILD)/corpus/$$n tests/fuzz/corpus/$$n; done

# Re-entered after deps so that pkg-config flags are read with the packages present.
test:
	@$(MAKE) -s deps-check 2>/dev/null || $(MAKE) deps
	@$(MAKE) --no-print-directory users test-suites
test-suites: all check-hardening test-units lint unit unit-san fuzz-short blackbox test-console fleet-test
	@echo "make test: all suites passed"

# ---- benchmark (issue 6; tests/bench/): `make bench` writes BENCHMARKS.md ----
# Not part of `make test`: a benchmark never fails on a number.  Bench-only
# Debian packages are installed by bench-deps (as root), not by deps.
BENCH_PKGS  := nginx-light linux-perf eatmydata
BENCH_TOOLS := $(BUILD)/libfaulthsm.so $(BUILD)/bench/kw-loadgen $(BUILD)/bench/kw-cryptocost \
               $(BUILD)/bench/kw-bench-populate $(BUILD)/bench/kw-auditcost $(BUILD)/bench/kw-hopcost
BENCH_CFLAGS = $(CFLAGS) $(WARN) $(HARDEN) -D_GNU_SOURCE $(shell pkg-config --cflags openssl)
$(BUILD)/bench/kw-loadgen: tests/bench/loadgen.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $< $(LDHARD) $(shell pkg-config --libs openssl) -o $@
$(BUILD)/bench/kw-cryptocost: tests/bench/cryptocost.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $< $(LDHARD) $(shell pkg-config --libs openssl) -o $@
# one process hop (AF_UNIX round trip between two processes): the floor of a custody call
$(BUILD)/bench/kw-hopcost: tests/bench/hopcost.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $< $(LDHARD) -o $@
$(BUILD)/bench/kw-bench-populate: tests/bench/populate.c $(BUILD)/libkeyward.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(PKG_LIBS) -ldl -o $@
# key-use audit cost in the key store alone: CPU us and bytes on disk per record
$(BUILD)/bench/kw-auditcost: tests/bench/auditcost.c $(BUILD)/libkeyward.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(PKG_LIBS) -ldl -o $@
.PHONY: bench bench-deps bench-tools
bench-tools: $(BENCH_TOOLS)
bench-deps:
	@missing=$$(for p in $(BENCH_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing (bench only):" $$missing; apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi
bench: bench-deps
	@$(MAKE) -s deps-check 2>/dev/null || $(MAKE) deps
	@$(MAKE) --no-print-directory all bench-tools
	KEYWARD_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/bench/bench.py --out BENCHMARKS.md
# ---- end of benchmark block ----

# ---- soak (issues 6, 11; tests/soak/): not part of `make test` ----
# Mixed admin + EKM + XKS load for SOAK_SECONDS with RSS and fd checks of both
# processes, beside kw-loadgen's XKS encrypts at the rate the server takes with
# [audit] max_bytes = SOAK_AUDIT_MAX_BYTES (retention and checkpoints all along,
# the database checked under its bound at every sample, the exports verified),
# then the kill -9 durability test with SOAK_KILL_TRIALS trials (~0.7 s each).
# About 10 minutes in all with the defaults.
SOAK_SECONDS     ?= 420
SOAK_KILL_TRIALS ?= 250
.PHONY: soak
soak: all test-tools $(BUILD)/bench/kw-loadgen
	SOAK_SECONDS=$(SOAK_SECONDS) KEYWARD_BUILD=$(abspath $(BUILD)) /usr/bin/python3 tests/soak/soak.py
	cd tests/blackbox && KEYWARD_KILL_TRIALS=$(SOAK_KILL_TRIALS) KEYWARD_BUILD=$(abspath $(BUILD)) \
	  /usr/bin/python3 -m pytest -q -x -p no:cacheprovider test_durability.py
# ---- end of soak block ----

clean:
	rm -rf $(BUILD)/obj $(BUILD)/san $(BUILD)/test $(BUILD)/santest $(BUILD)/fuzz $(BUILD)/fuzzobj $(BUILD)/*.a $(BUILD)/keywardd $(BUILD)/keywardctl $(BUILD)/keyward-unlock $(BUILD)/keyward-provision $(BUILD)/*.so
