# tests/image/image.mk - included by the top Makefile: `make image-boot-test`,
# the built image booted under qemu TCG + OVMF + swtpm (issue 15; README in
# tests/image/test_boot.py).  It needs the image: without one it fails and
# says how to build it.  IMAGE_BOOT_DEPS= (empty) boots an image already
# built instead of running `make image` first.  The phases' durations and
# the consoles (secrets masked) go to $(BUILD)/artefacts/image-boot/.
IMAGE_BOOT_DEPS ?= image
IMAGE_BOOT_DIR   = $(if $(IMAGE_OUT),$(abspath $(IMAGE_OUT)),$(abspath $(BUILD))/image)

.PHONY: image-boot-test
image-boot-test: $(IMAGE_BOOT_DEPS) $(BUILD)/keyward-provision $(BUILD)/keyward-unlock $(BUILD)/keyward-attest
	cd tests/image && KEYWARD_BUILD=$(abspath $(BUILD)) KEYWARD_VERSION=$(VERSION) \
	  KEYWARD_IMAGE_DIR=$(IMAGE_BOOT_DIR) timeout 3000 \
	  /usr/bin/python3 -m pytest -q -s -p no:cacheprovider test_boot.py
