# tests/image/boot.mk - included by the top Makefile (issue 15): make
# image-boot-test, the built image booted under qemu TCG + OVMF + swtpm
# (tests/image/test_boot.py): first boot with provisioning from a NoCloud
# disk, XKS/EKM/attestation through a forwarded loopback port, ACPI
# power-off, a second boot unlocking through the TPM, a third with a
# tampered UKI that must not unlock.  Needs `make image` (run first here;
# IMAGE_BOOT_DEPS= boots the image already in IMAGE_OUT instead); without an
# image every test fails saying so.  Durations and the consoles (secrets
# masked) go to $(BUILD)/artefacts/image-boot/.
IMAGE_BOOT_DEPS ?= image
image-boot-test: $(IMAGE_BOOT_DEPS) image-deps $(BUILD)/keyward-provision $(BUILD)/keyward-unlock $(BUILD)/keyward-attest
	cd tests/image && KEYWARD_BUILD=$(abspath $(BUILD)) KEYWARD_VERSION=$(VERSION) \
	  KEYWARD_IMAGE_DIR=$(abspath $(IMAGE_OUT)) timeout 3000 \
	  /usr/bin/python3 -m pytest -q -s -p no:cacheprovider test_boot.py
