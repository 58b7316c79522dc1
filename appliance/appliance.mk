# appliance/appliance.mk - included by the top Makefile: what runs inside the
# VM around the server.  keyward-unlock (appliance/unlock/): the data
# volume's LUKS2 header read and checked before use, its format with a
# recovery key, opening it with that key (issue 12).  Its library
# part (everything but main.c) is in LIB_SRCS, so the unit tests, the
# sanitizer runs and the fuzzers reach it like the server's modules.

# the program itself: main.c and the cli_*.c it is split into (cli.h)
UNLOCK_CLI  := appliance/unlock/main.c $(wildcard appliance/unlock/cli_*.c)
UNLOCK_SRCS := $(filter-out %_test.c $(UNLOCK_CLI),$(wildcard appliance/unlock/*.c))
LIB_SRCS    += $(UNLOCK_SRCS)
HEADERS     += $(wildcard appliance/unlock/*.h)
TEST_SRCS   += $(wildcard appliance/unlock/*_test.c)
vpath %_test.c appliance/unlock

# libcryptsetup (volume.c) is linked only here: the server has no use for it
UNLOCK_LIBS := $(shell pkg-config --libs libcryptsetup 2>/dev/null)
$(BUILD)/keyward-unlock: $(UNLOCK_CLI) appliance/unlock/cli.h $(BUILD)/libkeyward.a
	$(CC) $(ALL_CFLAGS) $(UNLOCK_CLI) $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(PKG_LIBS) $(UNLOCK_LIBS) -ldl -o $@

all: $(BUILD)/keyward-unlock

# ---- installation (issue 12): what the image build puts on the appliance ----
# `make install DESTDIR=/some/root`: the binaries, the systemd units, the
# sysctl and sysusers fragments, and the documents the units name.  The
# configuration (/etc/keyward/keyward.toml) and the data volume are the
# provisioning's.  tests/appliance/test_units.py installs into a temp root
# and checks the units there.
DESTDIR ?=
UNITDIR := /usr/lib/systemd/system
APPLIANCE_UNITS := $(wildcard appliance/systemd/*.service appliance/systemd/*.socket appliance/systemd/*.mount)
.PHONY: install test-units
install: $(BUILD)/keywardd $(BUILD)/keywardctl $(BUILD)/keyward-unlock $(BUILD)/keyward-provision
	install -D -m 0755 $(BUILD)/keywardd $(DESTDIR)/usr/sbin/keywardd
	install -D -m 0755 $(BUILD)/keyward-provision $(DESTDIR)/usr/sbin/keyward-provision
	install -D -m 0755 $(BUILD)/keyward-unlock $(DESTDIR)/usr/sbin/keyward-unlock
	install -D -m 0755 $(BUILD)/keywardctl $(DESTDIR)/usr/bin/keywardctl
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	install -m 0644 $(APPLIANCE_UNITS) $(DESTDIR)$(UNITDIR)/
	install -D -m 0644 appliance/sysctl.d/50-keyward.conf $(DESTDIR)/usr/lib/sysctl.d/50-keyward.conf
	install -D -m 0644 appliance/sysusers.d/keyward.conf $(DESTDIR)/usr/lib/sysusers.d/keyward.conf
	install -D -m 0644 appliance/tmpfiles.d/keyward.conf $(DESTDIR)/usr/lib/tmpfiles.d/keyward.conf
	install -d -m 0755 $(DESTDIR)/usr/share/doc/keyward
	install -m 0644 docs/appliance-units.md docs/unlock.md docs/provisioning.md docs/keyward.example.toml $(DESTDIR)/usr/share/doc/keyward/

# the units: systemd-analyze verify and the exposure bounds, on an installed tree
test-units: $(BUILD)/keywardd $(BUILD)/keywardctl $(BUILD)/keyward-unlock $(BUILD)/keyward-provision
	cd tests/appliance && KEYWARD_SRCDIR=$(CURDIR) /usr/bin/python3 -m pytest -q -p no:cacheprovider .
