# provisioning/provisioning.mk - included by the top Makefile: first-boot
# set-up, keyward-provision (issue 13).  source.c (where the provisioning
# document comes from) is linked only into the program: it needs libcurl,
# which nothing else in libkeyward uses.

PROV_SRCS := $(filter-out %_test.c,$(wildcard provisioning/*.c))
HEADERS   += $(wildcard provisioning/*.h)

$(BUILD)/keyward-provision: $(PROV_SRCS) $(wildcard provisioning/*.h) $(BUILD)/libkeyward.a
	$(CC) $(ALL_CFLAGS) $(PROV_SRCS) $(BUILD)/libkeyward.a $(ALL_LDFLAGS) $(PKG_LIBS) -lcurl -o $@

all: $(BUILD)/keyward-provision
