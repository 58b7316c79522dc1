# provisioning/provisioning.mk - included by the top Makefile: first-boot
# set-up, keyward-provision (issue 13).  The parsers of untrusted input
# (ovf.c, selftest_judge.c) and the pure SigV4 signer (sigv4_sign.c) are in
# LIB_SRCS, so that the unit tests, the sanitizer runs and the fuzzers reach
# them; the program's own files (main.c; source.c, selftest.c and httpc.c
# with libcurl; media.c with mount(2); disk.c with the block devices) are
# linked only into it.

PROV_CLI  := provisioning/main.c provisioning/source.c provisioning/media.c provisioning/disk.c \
             provisioning/httpc.c provisioning/selftest.c \
             provisioning/cli_run.c provisioning/run.c provisioning/runfs.c provisioning/spawn.c \
             provisioning/p11init.c provisioning/output.c provisioning/run_api.c
PROV_LIB  := $(filter-out %_test.c $(PROV_CLI),$(wildcard provisioning/*.c))
LIB_SRCS  += $(PROV_LIB)
HEADERS   += $(wildcard provisioning/*.h)
TEST_SRCS += $(wildcard provisioning/*_test.c)
vpath %_test.c provisioning

$(BUILD)/keyward-provision: $(PROV_CLI) $(wildcard provisioning/*.h) $(BUILD)/libkeyward.a
	$(CC) $(ALL_CFLAGS) $(PROV_CLI) $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(PKG_LIBS) -lcurl -ldl -o $@

all: $(BUILD)/keyward-provision

# The same program with fault points (KEYWARD_PROVISION_FAULT=step:point
# kills it there): for the tests that stop a run at each step.  Never
# installed.
$(BUILD)/test/keyward-provision-faults: $(PROV_CLI) $(wildcard provisioning/*.h) $(BUILD)/libkeyward.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DKWP_FAULTS $(PROV_CLI) $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(PKG_LIBS) -lcurl -ldl -o $@

all: $(BUILD)/test/keyward-provision-faults

# tls_test reaches the I/O failures of tls.c's atomic writes with -Wl,--wrap
# fakes (write, fsync, renameat2 fail on demand; every other call goes
# through): its own link lines, otherwise those of every unit test.
KWP_TLS_WRAP := -Wl,--wrap=write,--wrap=fsync,--wrap=renameat2
$(BUILD)/test/tls_test: provisioning/tls_test.c $(BUILD)/libkeyward.a
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(ALL_CFLAGS) $< $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(KWP_TLS_WRAP) $(PKG_LIBS) -lcmocka -ldl -o $@
$(BUILD)/santest/tls_test: provisioning/tls_test.c $(BUILD)/libkeyward-san.a
	@mkdir -p $(dir $@)
	@echo "  TEST-SAN $@"
	$(Q)$(CC) $(SAN_CFLAGS) $< $(BUILD)/libkeyward-san.a $(SAN_LDFLAGS) $(KWP_TLS_WRAP) $(PKG_LIBS) -lcmocka -ldl -o $@
