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
