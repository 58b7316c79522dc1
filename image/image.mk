# image/image.mk - included by the top Makefile: the appliance disk image
# (issue 15; docs/image.md).  `make image` as root on Debian 12.
IMAGE_OUT  ?= $(BUILD)/image
IMAGE_DEB_PKGS := debootstrap squashfs-tools cryptsetup-bin systemd-boot-efi binutils sbsigntool \
                  gdisk dosfstools mtools python3-pefile swtpm swtpm-tools openssl qemu-system-x86 \
                  ovmf qemu-utils e2fsprogs
.PHONY: image image-deps image-test image-boot-test
image-deps:
	@missing=$$(for p in $(IMAGE_DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null; fi

# REPRODUCE=manifest.json rebuilds from an earlier build's manifest and fails on any difference
image: image-deps $(BUILD)/keywardd $(BUILD)/keywardctl $(BUILD)/keyward-unlock $(BUILD)/keyward-provision
	KEYWARD_VERSION=$(VERSION) image/build.sh $(IMAGE_OUT)
