# tests/image/static.mk - included by the top Makefile (issue 15)
# make image-test: the static checks of a built image, in minutes, nothing
# mounted (tests/image/test_image_static.py): the GPT and its derived UUIDs,
# the .vhd and the GCP tarball, the ESP, the UKI's sections, PCR 4 and PCR 11
# recomputed, policy.json and its signatures, dm-verity, what the root file
# system holds and must not hold, manifest.json.  It does not build the image
# (`sudo make image`): without one, every test fails saying so.
image-test: image-deps
	cd tests/image && KEYWARD_IMAGE_DIR=$(abspath $(IMAGE_OUT)) KEYWARD_VERSION=$(VERSION) \
	  KEYWARD_SRCDIR=$(CURDIR) /usr/bin/python3 -m pytest -q -p no:cacheprovider test_image_static.py
