#!/bin/bash
# image/build.sh - the Keyward appliance image (issue 15), run by `make image`
# as root on Debian 12.  See docs/image.md for what it makes and why.
#
#   image/build.sh OUTDIR
#
# Environment (the Makefile passes these):
#   KEYWARD_VERSION     the image version (the Makefile's)
#   SOURCE_DATE_EPOCH   every timestamp in the image; default: the last commit's time
#   MIRROR              the Debian mirror (default http://deb.debian.org/debian)
#   REPRODUCE           a manifest.json of an earlier build: rebuild from it, and
#                       fail when any package version, input or output differs
#   IMAGE_KEY           the image key (RSA private key, PEM): signs the UKI's PCR
#                       policy (.pcrsig) and policy.json.  Default: a throwaway
#                       key made once under build/image-keys/ (tests only)
#   SB_KEY, SB_CERT     the Secure Boot db key and certificate for sbsign;
#                       default a throwaway pair there too.  SB_KEY=none: unsigned
#   IMAGE_CACHE         where downloaded packages are kept between builds,
#                       keyed by the package list (default /var/cache/keyward-image)
#
# Steps: root file system (debootstrap) -> Keyward's files and lock-down ->
# initrd -> squashfs -> dm-verity -> UKI (objcopy on systemd-stub, PCR 11
# signed by systemd-measure) -> ESP (mtools, no mount) -> GPT disk (sgdisk)
# -> .raw, .vhd, -gcp.tar.gz -> manifest.json, policy.json(.sig).
set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC

SRC=$(cd "$(dirname "$0")/.." && pwd)
IMG="$SRC/image"
OUT=$(realpath -m "${1:?usage: build.sh OUTDIR}")
VERSION=${KEYWARD_VERSION:?KEYWARD_VERSION is not set}
SUITE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CACHE=${IMAGE_CACHE:-/var/cache/keyward-image}
KEYDIR="$SRC/build/image-keys"

say() { printf 'image: %s\n' "$*" >&2; }
die() { printf 'image: %s\n' "$*" >&2; exit 1; }
hexsha() { sha256sum "$1" | cut -c1-64; }
# a UUID from 32 hex digits, as systemd writes them
as_uuid() { local h=$1; echo "${h:0:8}-${h:8:4}-${h:12:4}-${h:16:4}-${h:20:12}"; }
mib_up() { echo $(( ($1 + 1048575) / 1048576 * 1048576 )); }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it): sudo make image"
for t in debootstrap mksquashfs veritysetup objcopy sbsign sgdisk mkfs.vfat mcopy swtpm openssl; do
        command -v "$t" >/dev/null || die "$t is missing: make image-deps installs what the build needs"
done
/usr/bin/python3 -c 'import pefile' 2>/dev/null || die "python3-pefile is missing: make image-deps"

if [ -n "${REPRODUCE:-}" ]; then
        [ -f "$REPRODUCE" ] || die "REPRODUCE=$REPRODUCE: no such manifest"
        # a copy: the rebuild may write over the manifest and policy.json it compares with
        RDIR=$(mktemp -d)
        cp "$REPRODUCE" "$RDIR/manifest.json"
        for f in policy.json policy.json.sig "keyward-$VERSION.efi"; do
                [ ! -f "$(dirname "$REPRODUCE")/$f" ] || cp "$(dirname "$REPRODUCE")/$f" "$RDIR/$f"
        done
        REPRODUCE="$RDIR/manifest.json"
        SOURCE_DATE_EPOCH=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["source_date_epoch"])' "$REPRODUCE")
        MIRROR=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mirror"])' "$REPRODUCE")
        say "reproducing $REPRODUCE (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, mirror $MIRROR)"
        WANT_COMMIT=$(/usr/bin/python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["source_commit"], m["source_modified"])' "$REPRODUCE")
        [ "${WANT_COMMIT% *}" = "$(git -C "$SRC" rev-parse HEAD 2>/dev/null)" ] ||
                die "the manifest was built from commit ${WANT_COMMIT% *}: git checkout it first"
        [ "${WANT_COMMIT#* }" = False ] ||
                die "the manifest's build had uncommitted changes (source_modified): it cannot be reproduced from a commit"
        [ -z "$(git -C "$SRC" status --porcelain --untracked-files=no)" ] ||
                die "this tree has uncommitted changes: commit or stash them to reproduce"
fi
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$SRC" log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH
WORK="$OUT/work"
PARTS="$OUT/parts"
ROOT="$WORK/root"
# whatever an interrupted debootstrap left mounted in the root (proc, sys)
# goes before anything is removed under it
unmount_work() {
        findmnt -rn -o TARGET | { grep -F "$WORK/" || true; } | sort -r | while read -r m; do umount -l "$m"; done
}
cleanup() { unmount_work; [ -z "${RDIR:-}" ] || rm -rf "$RDIR"; }
trap cleanup EXIT
unmount_work
rm -rf "$WORK" "$PARTS"
mkdir -p "$WORK" "$PARTS" "$KEYDIR"
T0=$(date +%s)

# ---- keys -------------------------------------------------------------------
SPLICE=""
if [ -n "${REPRODUCE:-}" ] && [ -f "$RDIR/keyward-$VERSION.efi" ]; then
        # a rebuild without the publisher's private keys: the image key's public
        # half and the two signatures (the UKI's .pcrsig, the Secure Boot one)
        # come from the published UKI; everything they cover is rebuilt and compared
        SPLICE="$RDIR/keyward-$VERSION.efi"
        objcopy --dump-section .pcrpkey="$WORK/image-key.pem" "$SPLICE" "$WORK/discard.efi" ||
                die "the published keyward-$VERSION.efi has no .pcrpkey section"
        IMAGE_KEY=""
elif [ -z "${IMAGE_KEY:-}" ]; then
        IMAGE_KEY="$KEYDIR/image-key.pem"
        if [ ! -f "$IMAGE_KEY" ]; then
                say "no IMAGE_KEY given: making a throwaway image key in $IMAGE_KEY (for tests only)"
                openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$IMAGE_KEY" 2>/dev/null
                chmod 0600 "$IMAGE_KEY"
        fi
fi
[ -n "$SPLICE" ] || openssl pkey -in "$IMAGE_KEY" -pubout -out "$WORK/image-key.pem" 2>/dev/null ||
        die "IMAGE_KEY=$IMAGE_KEY is not a private key in PEM"
SB_KEY=${SB_KEY:-}
if [ -z "$SB_KEY" ] && [ -z "$SPLICE" ]; then
        SB_KEY="$KEYDIR/db.key" SB_CERT="$KEYDIR/db.crt"
        if [ ! -f "$SB_KEY" ]; then
                say "no SB_KEY given: making a throwaway Secure Boot db key in $KEYDIR (for tests only)"
                openssl req -new -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Keyward test db key/" \
                        -keyout "$SB_KEY" -out "$SB_CERT" 2>/dev/null
                chmod 0600 "$SB_KEY"
        fi
fi

# ---- root file system ---------------------------------------------------------
PKG_ALL=$(grep -v '^[[:space:]]*#' "$IMG/packages.list" | awk 'NF {print $1}' | sort)
PKG_BUILD=$(grep -v '^[[:space:]]*#' "$IMG/packages.list" | awk 'NF && $2 == "build" {print $1}' | sort)
DEBS="$CACHE/debs-$(printf '%s\n%s\n%s\n' "$SUITE" "$MIRROR" "$PKG_ALL" | sha256sum | cut -c1-16)"
mkdir -p "$DEBS"
say "debootstrap $SUITE from $MIRROR (package cache $DEBS)"
debootstrap --variant=minbase --include="$(echo $PKG_ALL | tr ' ' ,)" --cache-dir="$DEBS" \
        "$SUITE" "$ROOT" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }

in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" LC_ALL=C "$@"; }
KVER=$(basename "$(ls -d "$ROOT"/lib/modules/* | sort | tail -1)")
say "kernel $KVER"

# the manifest: every package and version (dpkg's own view), before anything is removed
in_root dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' | sort > "$WORK/packages.tsv"
if [ -n "${REPRODUCE:-}" ]; then
        /usr/bin/python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
want = {(p["name"], p["version"], p["arch"]) for p in m["packages"]}
have = {tuple(l.split("\t")) for l in open(sys.argv[2]).read().splitlines()}
if want != have:
    for p in sorted(want - have): print("image: the manifest has", " ".join(p), file=sys.stderr)
    for p in sorted(have - want): print("image: this build got", " ".join(p), file=sys.stderr)
    sys.exit("image: the packages differ from the manifest: use a snapshot mirror of its date, e.g. MIRROR=http://snapshot.debian.org/archive/debian/<YYYYMMDDTHHMMSSZ>/")
' "$REPRODUCE" "$WORK/packages.tsv"
fi
cp "$ROOT/var/lib/dpkg/status" "$WORK/dpkg-status"

# ---- Keyward's files --------------------------------------------------------
say "installing keywardd, keyward-unlock, keyward-provision, keywardctl and the units"
make -C "$SRC" --no-print-directory install DESTDIR="$ROOT" >/dev/null
cp -a "$IMG/rootfs/." "$ROOT/"
install -D -m 0644 "$WORK/image-key.pem" "$ROOT/usr/lib/systemd/tpm2-pcr-public-key.pem"
install -D -m 0644 "$WORK/dpkg-status" "$ROOT/usr/share/keyward/dpkg-status"
ln -sfn /var/lib/keyward/etc "$ROOT/etc/keyward"
cat > "$ROOT/usr/lib/os-release" <<EOF
PRETTY_NAME="Keyward appliance $VERSION"
NAME="Keyward appliance"
ID=keyward
ID_LIKE=debian
VERSION_ID=$VERSION
VERSION="$VERSION"
IMAGE_ID=keyward
IMAGE_VERSION=$VERSION
HOME_URL="https://keyward.example/"
EOF
ln -sfn ../usr/lib/os-release "$ROOT/etc/os-release"
echo keyward > "$ROOT/etc/hostname"
cat > "$ROOT/etc/fstab" <<'EOF'
# Keyward image: the root is read-only (dm-verity); state lives in memory or on
# the data volume, which var-lib-keyward.mount puts on /var/lib/keyward.
tmpfs /var tmpfs mode=0755,nosuid,nodev,size=256m 0 0
tmpfs /tmp tmpfs mode=1777,nosuid,nodev,noexec,size=64m 0 0
EOF
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"

# users (sysusers at build time: /etc is read-only at run time)
in_root systemd-sysusers >/dev/null
# no login: root has no password and no shell; no console getty, no rescue shell
in_root usermod -s /usr/sbin/nologin root
in_root passwd -l root >/dev/null
for u in $(cut -d: -f1 "$ROOT/etc/passwd"); do in_root usermod -s /usr/sbin/nologin "$u" >/dev/null 2>&1 || true; done
in_root systemctl mask getty@.service serial-getty@.service console-getty.service container-getty@.service \
        autovt@.service getty.target rescue.service emergency.service debug-shell.service \
        systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
        e2scrub_all.timer fstrim.timer 2>/dev/null
in_root systemctl enable systemd-networkd.service systemd-resolved.service keyward-provision.service \
        keyward-custody.socket keyward-custody.service keyward-front.service var-lib-keyward.mount 2>/dev/null
in_root systemctl set-default multi-user.target 2>/dev/null
rm -rf "$ROOT/etc/systemd/system/getty.target.wants"   # masked above; no link left either

# initrd: initramfs-tools with the verity hook (image/rootfs/etc/initramfs-tools)
say "initrd"
in_root update-initramfs -c -k "$KVER" > "$WORK/initramfs.log" 2>&1 ||
        { tail -20 "$WORK/initramfs.log" >&2; die "update-initramfs failed"; }
cp "$ROOT/boot/vmlinuz-$KVER" "$PARTS/linux"
cp "$ROOT/boot/initrd.img-$KVER" "$PARTS/initrd"
cp "$ROOT/usr/lib/systemd/boot/efi/linuxx64.efi.stub" "$WORK/stub.efi"

# what a customer would not want on a key appliance: build-only packages,
# the package manager, state the build left behind
say "sealing the root: removing the package manager and build-only files"
for p in $PKG_BUILD; do
        in_root dpkg-query -L "$p" 2>/dev/null | while read -r f; do
                [ -f "$ROOT$f" ] || [ -L "$ROOT$f" ] && rm -f "$ROOT$f"
        done
done
rm -rf "$ROOT"/boot/* "$ROOT"/etc/initramfs-tools "$ROOT"/usr/share/initramfs-tools \
       "$ROOT"/usr/lib/systemd/boot "$ROOT"/usr/bin/apt* "$ROOT"/usr/bin/dpkg* "$ROOT"/usr/sbin/dpkg* \
       "$ROOT"/usr/lib/apt "$ROOT"/usr/lib/dpkg "$ROOT"/usr/share/doc/dpkg "$ROOT"/etc/apt "$ROOT"/etc/dpkg \
       "$ROOT"/usr/share/man "$ROOT"/usr/share/info "$ROOT"/usr/share/locale "$ROOT"/usr/share/lintian \
       "$ROOT"/etc/ssh "$ROOT"/debootstrap "$ROOT"/var/* "$ROOT"/tmp/* "$ROOT"/etc/*- \
       "$ROOT"/etc/.pwd.lock "$ROOT"/etc/ld.so.cache "$ROOT"/vmlinuz* "$ROOT"/initrd.img*
in_root ldconfig
rm -f "$ROOT/var/cache/ldconfig/aux-cache"
rm -rf "$ROOT"/var/*
: > "$ROOT/etc/machine-id"
find "$ROOT" -xdev -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

# ---- squashfs + dm-verity ----------------------------------------------------
say "squashfs"
mksquashfs "$ROOT" "$PARTS/root.sqfs" -noappend -comp zstd \
        -no-progress -quiet >/dev/null   # SOURCE_DATE_EPOCH: every time stamp
truncate -s "$(mib_up "$(stat -c %s "$PARTS/root.sqfs")")" "$PARTS/root.sqfs"
SQFS_SHA=$(hexsha "$PARTS/root.sqfs")
SALT=$(printf 'keyward-verity-salt %s' "$SQFS_SHA" | sha256sum | cut -c1-64)
VUUID=$(as_uuid "$(printf 'keyward-verity-uuid %s' "$SQFS_SHA" | sha256sum | cut -c1-32)")
say "dm-verity"
veritysetup format "$PARTS/root.sqfs" "$PARTS/root.verity" --salt="$SALT" --uuid="$VUUID" \
        --data-block-size=4096 --hash-block-size=4096 --hash=sha256 > "$WORK/verity.txt"
ROOTHASH=$(awk '/^Root hash:/ {print $3}' "$WORK/verity.txt")
[ ${#ROOTHASH} = 64 ] || die "veritysetup format gave no root hash"
truncate -s "$(mib_up "$(stat -c %s "$PARTS/root.verity")")" "$PARTS/root.verity"
ROOT_UUID=$(as_uuid "${ROOTHASH:0:32}")
VERITY_UUID=$(as_uuid "${ROOTHASH:32:32}")
say "root hash $ROOTHASH"

# ---- UKI -------------------------------------------------------------------
printf 'roothash=%s systemd.verity_root_data=PARTUUID=%s systemd.verity_root_hash=PARTUUID=%s root=/dev/mapper/root rootfstype=squashfs ro console=tty0 console=ttyS0,115200 panic=30 quiet' \
        "$ROOTHASH" "$ROOT_UUID" "$VERITY_UUID" > "$PARTS/cmdline"
cp "$ROOT/usr/lib/os-release" "$PARTS/osrel"
cp "$WORK/image-key.pem" "$PARTS/pcrpkey"

# systemd-measure sign runs a trial policy session on a TPM: a throwaway swtpm
sign_pcrs() {   # parts dir, private key, out
        local d port i
        d=$(mktemp -d)
        for i in 1 2 3 4 5; do
                port=$((20000 + RANDOM % 20000))
                swtpm socket --tpm2 --tpmstate dir="$d" --server type=tcp,port=$port,bindaddr=127.0.0.1 \
                        --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
                        --flags not-need-init,startup-clear --daemon --pid file="$d/pid" 2>/dev/null && break
        done
        [ -f "$d/pid" ] || die "could not start swtpm for systemd-measure sign"
        local rc=0
        /lib/systemd/systemd-measure sign --bank=sha256 --phase=sysinit \
                --tpm2-device="swtpm:host=127.0.0.1,port=$port" \
                --linux="$1/linux" --osrel="$1/osrel" --cmdline="$1/cmdline" --initrd="$1/initrd" \
                --pcrpkey="$1/pcrpkey" --private-key="$2" --public-key="$1/pcrpkey" > "$3" || rc=$?
        kill "$(cat "$d/pid")" 2>/dev/null || true
        rm -rf "$d"
        [ $rc = 0 ] || die "systemd-measure sign failed"
}
say "UKI (systemd-stub + kernel + initrd + cmdline + os-release + PCR 11 signature)"
SB_SIG=""
if [ -n "$SPLICE" ]; then
        say "reproducing: the image key, the PCR signature and the Secure Boot signature come from the published keyward-$VERSION.efi"
        objcopy --dump-section .pcrsig="$PARTS/pcrsig" "$SPLICE" "$WORK/discard.efi"
        if sbattach --detach "$WORK/sb.sig" "$SPLICE" >/dev/null 2>&1; then
                SB_SIG="$WORK/sb.sig"
        else
                SB_KEY=none
        fi
else
        sign_pcrs "$PARTS" "$IMAGE_KEY" "$PARTS/pcrsig"
fi
/usr/bin/python3 "$IMG/uki.py" --stub "$WORK/stub.efi" --linux "$PARTS/linux" --initrd "$PARTS/initrd" \
        --cmdline "$PARTS/cmdline" --osrel "$PARTS/osrel" --pcrpkey "$PARTS/pcrpkey" --pcrsig "$PARTS/pcrsig" \
        --epoch "$SOURCE_DATE_EPOCH" --out "$PARTS/uki-unsigned.efi"
if [ -n "$SB_SIG" ]; then
        cp "$PARTS/uki-unsigned.efi" "$OUT/keyward-$VERSION.efi"
        sbattach --attach "$SB_SIG" "$OUT/keyward-$VERSION.efi" >/dev/null 2>&1 ||
                die "the published Secure Boot signature does not attach to the rebuilt UKI"
elif [ "$SB_KEY" = none ]; then
        cp "$PARTS/uki-unsigned.efi" "$OUT/keyward-$VERSION.efi"
else
        sbsign --key "$SB_KEY" --cert "$SB_CERT" --output "$OUT/keyward-$VERSION.efi" "$PARTS/uki-unsigned.efi" 2>/dev/null ||
                die "sbsign failed (SB_KEY=$SB_KEY SB_CERT=${SB_CERT:-})"
fi
UKI="$OUT/keyward-$VERSION.efi"

# ---- ESP (FAT, made and filled without mounting) ----------------------------
say "ESP"
ESP_SIZE=$(mib_up $(( $(stat -c %s "$UKI") + 8 * 1048576 )))
[ "$ESP_SIZE" -ge $((64 * 1048576)) ] || ESP_SIZE=$((64 * 1048576))
rm -f "$PARTS/esp.img"
truncate -s "$ESP_SIZE" "$PARTS/esp.img"
VOLID=$(printf 'keyward-esp %s' "$ROOTHASH" | sha256sum | cut -c1-8)
mkfs.vfat -F 32 -n ESP -i "$VOLID" --invariant "$PARTS/esp.img" >/dev/null
touch -d "@$SOURCE_DATE_EPOCH" "$UKI"
MTOOLS_SKIP_CHECK=1 mmd -i "$PARTS/esp.img" ::EFI ::EFI/BOOT
MTOOLS_SKIP_CHECK=1 mcopy -m -i "$PARTS/esp.img" "$UKI" ::EFI/BOOT/BOOTX64.EFI

# ---- GPT disk ----------------------------------------------------------------
say "disk"
MIB=1048576
ESP_START=$MIB
ROOT_START=$((ESP_START + ESP_SIZE))
ROOT_SIZE=$(stat -c %s "$PARTS/root.sqfs")
VERITY_START=$((ROOT_START + ROOT_SIZE))
VERITY_SIZE=$(stat -c %s "$PARTS/root.verity")
DISK_SIZE=$((VERITY_START + VERITY_SIZE + MIB))
DISK_GUID=$(as_uuid "$(printf 'keyward-disk %s' "$ROOTHASH" | sha256sum | cut -c1-32)")
ESP_UUID=$(as_uuid "$(printf 'keyward-esp-partition %s' "$ROOTHASH" | sha256sum | cut -c1-32)")
RAW="$OUT/keyward-$VERSION.raw"
rm -f "$RAW"
truncate -s "$DISK_SIZE" "$RAW"
sgdisk --clear --disk-guid="$DISK_GUID" \
        --new=1:$((ESP_START / 512)):$(( (ROOT_START / 512) - 1 )) --typecode=1:c12a7328-f81f-11d2-ba4b-00a0c93ec93b \
        --partition-guid=1:"$ESP_UUID" --change-name=1:esp \
        --new=2:$((ROOT_START / 512)):$(( (VERITY_START / 512) - 1 )) --typecode=2:4f68bce3-e8cd-4db1-96e7-fbcaf984b709 \
        --partition-guid=2:"$ROOT_UUID" --change-name=2:root \
        --new=3:$((VERITY_START / 512)):$(( (VERITY_START + VERITY_SIZE) / 512 - 1 )) --typecode=3:2c7357ed-ebd2-46d9-aec1-23d437ec2bf5 \
        --partition-guid=3:"$VERITY_UUID" --change-name=3:root-verity \
        "$RAW" >/dev/null
dd if="$PARTS/esp.img" of="$RAW" bs=1M seek=$((ESP_START / MIB)) conv=notrunc,sparse status=none
dd if="$PARTS/root.sqfs" of="$RAW" bs=1M seek=$((ROOT_START / MIB)) conv=notrunc,sparse status=none
dd if="$PARTS/root.verity" of="$RAW" bs=1M seek=$((VERITY_START / MIB)) conv=notrunc,sparse status=none
sgdisk --verify "$RAW" | grep -q 'No problems found' || die "sgdisk --verify found problems in $RAW"

say "cloud formats (.vhd, -gcp.tar.gz)"
/usr/bin/python3 "$IMG/vhd.py" "$RAW" "$OUT/keyward-$VERSION.vhd" --epoch "$SOURCE_DATE_EPOCH" \
        --uuid "$(printf 'keyward-vhd %s' "$ROOTHASH" | sha256sum | cut -c1-32)"
mkdir -p "$WORK/gcp"
cp --sparse=always "$RAW" "$WORK/gcp/disk.raw"
touch -d "@$SOURCE_DATE_EPOCH" "$WORK/gcp/disk.raw"
tar --format=oldgnu --sparse --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        -C "$WORK/gcp" -cf - disk.raw | gzip -n -6 > "$OUT/keyward-$VERSION-gcp.tar.gz"
rm -rf "$WORK/gcp"

# ---- manifest, policy ------------------------------------------------------------
say "manifest.json, policy.json"
cp "$WORK/image-key.pem" "$OUT/image-key.pem"
/usr/bin/python3 "$IMG/manifest.py" --packages "$WORK/packages.tsv" --version "$VERSION" --suite "$SUITE" \
        --mirror "$MIRROR" --epoch "$SOURCE_DATE_EPOCH" --src "$SRC" --kernel "$KVER" \
        --out "$OUT/manifest.json"
/usr/bin/python3 "$IMG/policy.py" --uki "$UKI" --parts "$PARTS" --pcrsig "$PARTS/pcrsig" --roothash "$ROOTHASH" \
        --version "$VERSION" --epoch "$SOURCE_DATE_EPOCH" --manifest "$OUT/manifest.json" \
        --pubkey "$OUT/image-key.pem" --out "$OUT/policy.json"
if [ -n "$SPLICE" ]; then
        [ -f "$RDIR/policy.json.sig" ] && cmp -s "$RDIR/policy.json" "$OUT/policy.json" ||
                die "policy.json differs from the published one (or it has no policy.json.sig beside it)"
        cp "$RDIR/policy.json.sig" "$OUT/policy.json.sig"   # the publisher's, over the same bytes
else
        openssl dgst -sha256 -sign "$IMAGE_KEY" -out "$OUT/policy.json.sig" "$OUT/policy.json"
fi
(cd "$OUT" && sha256sum "keyward-$VERSION.raw" "keyward-$VERSION.vhd" "keyward-$VERSION-gcp.tar.gz" \
        "keyward-$VERSION.efi" policy.json manifest.json image-key.pem > SHA256SUMS)

if [ -n "${REPRODUCE:-}" ]; then
        /usr/bin/python3 "$IMG/manifest.py" --compare "$REPRODUCE" --out "$OUT/manifest.json" ||
                die "the rebuild differs from $REPRODUCE (see above)"
        say "reproduced: every output named in $REPRODUCE is identical"
fi
rm -rf "$WORK"
say "done in $(( $(date +%s) - T0 )) s: $OUT"
