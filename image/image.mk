# image/image.mk - included by the top Makefile: the appliance disk image
# (issue 15; docs/image.md).  `make image` as root on Debian 12.  fdisk: the
# boot test reads the data disk's table with sfdisk (tests/image/disks.py).
IMAGE_OUT  ?= $(BUILD)/image
IMAGE_DEB_PKGS := debootstrap squashfs-tools cryptsetup-bin systemd-boot-efi binutils sbsigntool \
                  gdisk dosfstools mtools python3-pefile swtpm swtpm-tools openssl qemu-system-x86 \
                  ovmf qemu-utils e2fsprogs fdisk
.PHONY: image image-deps image-test image-boot-test image-repro-test
image-deps:
	@missing=$$(for p in $(IMAGE_DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null; fi

# REPRODUCE=manifest.json rebuilds from an earlier build's manifest and fails on any difference
image: image-deps $(BUILD)/keywardd $(BUILD)/keywardctl $(BUILD)/keyward-unlock $(BUILD)/keyward-provision
	KEYWARD_VERSION=$(VERSION) image/build.sh $(IMAGE_OUT)

# two builds from the same inputs must be byte-identical: a second build
# reproduces the first from its manifest (image/build.sh compares every output
# and policy.json and fails on any difference); then the disks are compared here
# too.  Needs a clean tree (the manifest records the commit).
image-repro-test: image
	rm -rf $(IMAGE_OUT)-repro
	KEYWARD_VERSION=$(VERSION) REPRODUCE=$(IMAGE_OUT)/manifest.json image/build.sh $(IMAGE_OUT)-repro
	cd $(IMAGE_OUT) && for f in keyward-$(VERSION).raw keyward-$(VERSION).vhd keyward-$(VERSION)-gcp.tar.gz \
	  keyward-$(VERSION).efi policy.json policy.json.sig manifest.json; do \
	  cmp $$f ../$(notdir $(IMAGE_OUT))-repro/$$f || { echo "image-repro-test: $$f differs"; exit 1; }; done
	@echo "image-repro-test: the rebuild is byte-identical"
