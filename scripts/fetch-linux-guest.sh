#!/usr/bin/env bash
# Fetches the reference Linux guest: Debian's 6.12 cloud kernel and a busybox initramfs.
#
# Outputs (in $HVTRACE_LINUX_DIR, default target/linux-guest/ of the repository):
#   bzImage         the kernel as Debian ships it (zstd-compressed, 64-bit boot protocol, PVH note)
#   vmlinux         the uncompressed ELF kernel, from the payload the bzImage's setup header names
#                   (section headers kept, no .symtab: symbols come from kallsyms, types from .BTF)
#   initramfs.cpio  busybox-static with a tiny /init (cpio newc, uncompressed)
#   VERSION         the package version these came from
#
# Idempotent: a complete cache is left alone (delete the directory to fetch again). Installs the
# tools it needs (dpkg-deb, zstd, cpio) with apt-get when they are missing. Every step that fails
# says which one and why, and the script exits non-zero.
set -euo pipefail

# The version the tests were written against; the newest 6.12 cloud kernel is used when the
# archive no longer has it (Debian's security pocket drops old point releases).
PINNED_VERSION="${HVTRACE_LINUX_VERSION:-6.12.117+deb12}"
FLAVOUR="cloud-amd64"

repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${HVTRACE_LINUX_DIR:-$repo/target/linux-guest}"

step() { echo "fetch-linux-guest: $*" >&2; }
fail() {
    echo "fetch-linux-guest: FAILED: $*" >&2
    exit 1
}

if [ -s "$dir/bzImage" ] && [ -s "$dir/vmlinux" ] && [ -s "$dir/initramfs.cpio" ] && [ -s "$dir/VERSION" ]; then
    step "cached in $dir ($(cat "$dir/VERSION")): nothing to do"
    exit 0
fi
mkdir -p "$dir" || fail "cannot create $dir"

# --- tools ------------------------------------------------------------------------------------
apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        step "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || fail "apt-get update"
        apt_updated=1
    fi
}
missing=()
command -v dpkg-deb >/dev/null || missing+=(dpkg)
command -v zstd >/dev/null || missing+=(zstd)
command -v cpio >/dev/null || missing+=(cpio)
if [ ${#missing[@]} -gt 0 ]; then
    apt_update
    step "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
        fail "apt-get install ${missing[*]} (needs root and Debian's package archive)"
fi

# --- which kernel package ---------------------------------------------------------------------
package_exists() { apt-cache show "$1" >/dev/null 2>&1; }
newest_kernel() {
    apt-cache search --names-only "^linux-image-6\.12\.[0-9]+\+deb12-$FLAVOUR\$" |
        awk '{print $1}' | sort -V | tail -n 1
}
pkg="linux-image-$PINNED_VERSION-$FLAVOUR"
if ! package_exists "$pkg"; then
    apt_update
fi
if ! package_exists "$pkg"; then
    newest="$(newest_kernel)"
    [ -n "$newest" ] || fail "no linux-image-6.12.*+deb12-$FLAVOUR package in the apt sources (is bookworm-security listed?)"
    step "pinned $pkg is not in the archive; using the newest available, $newest"
    pkg="$newest"
fi
kver="${pkg#linux-image-}" # 6.12.N+deb12-cloud-amd64

work="$dir/work"
rm -rf "$work"
mkdir -p "$work/debs"

# --- download and unpack ----------------------------------------------------------------------
step "apt-get download $pkg busybox-static"
(cd "$work/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg" busybox-static >&2) ||
    fail "apt-get download $pkg busybox-static"
kdeb="$(ls "$work"/debs/linux-image-*.deb)"
bdeb="$(ls "$work"/debs/busybox-static_*.deb)"
dpkg-deb -x "$kdeb" "$work/kernel" || fail "dpkg-deb -x $kdeb"
dpkg-deb -x "$bdeb" "$work/busybox" || fail "dpkg-deb -x $bdeb"
bzimage="$work/kernel/boot/vmlinuz-$kver"
[ -s "$bzimage" ] || fail "the package has no boot/vmlinuz-$kver"

# --- vmlinux from the bzImage (extract-vmlinux, but exact: the setup header names the payload) -
u8() { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '; }
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
magic="$(od -An -c -j $((0x202)) -N4 "$bzimage" | tr -d ' ')"
[ "$magic" = "HdrS" ] || fail "$bzimage has no Linux setup header (no HdrS at 0x202)"
setup_sects="$(u8 "$bzimage" $((0x1f1)))"
[ "$setup_sects" != 0 ] || setup_sects=4
payload_offset="$(u32 "$bzimage" $((0x248)))"
payload_length="$(u32 "$bzimage" $((0x24c)))"
start=$(((setup_sects + 1) * 512 + payload_offset))
[ "$payload_length" -gt 4 ] || fail "setup header: payload_length $payload_length"
payload_magic="$(od -An -tx1 -j "$start" -N4 "$bzimage" | tr -d ' ')"
[ "$payload_magic" = "28b52ffd" ] ||
    fail "the payload at $start is not zstd (magic $payload_magic); only zstd kernels are handled"
step "vmlinux: zstd payload of $payload_length bytes at offset $start"
# The kernel build appends the uncompressed size (le32) after the zstd frame: leave it out
# of the stream and check it against what zstd produced.
dd if="$bzimage" iflag=skip_bytes,count_bytes skip="$start" count=$((payload_length - 4)) status=none |
    zstd -d -q -o "$work/vmlinux" || fail "zstd could not decompress the payload"
expected_size="$(u32 "$bzimage" $((start + payload_length - 4)))"
actual_size="$(stat -c %s "$work/vmlinux")"
[ "$expected_size" = "$actual_size" ] ||
    fail "vmlinux is $actual_size bytes, the payload says $expected_size"
[ "$(od -An -c -N4 "$work/vmlinux" | tr -d ' ')" = '177ELF' ] || fail "the payload is not an ELF image"

# --- initramfs from busybox-static -------------------------------------------------------------
root="$work/initramfs"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc}
cp "$work/busybox/bin/busybox" "$root/bin/busybox" || fail "busybox-static has no bin/busybox"
ln -s busybox "$root/bin/sh"
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "hvtrace-guest: init running on $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpu(s)"
if grep -q 'hvtrace.shell' /proc/cmdline; then exec setsid cttyhack sh; fi
echo "hvtrace-guest: done, powering off"
poweroff -f
INIT
chmod 755 "$root/init"
if ! mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null; then
    step "warning: cannot mknod /dev/console (not root?): the kernel will warn about no initial console"
fi
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) \
    >"$work/initramfs.cpio" || fail "cpio could not build the initramfs"

# --- publish ----------------------------------------------------------------------------------
mv "$bzimage" "$dir/bzImage"
mv "$work/vmlinux" "$dir/vmlinux"
mv "$work/initramfs.cpio" "$dir/initramfs.cpio"
echo "$kver" >"$dir/VERSION"
rm -rf "$work"
step "done: $dir/{bzImage,vmlinux,initramfs.cpio} from $pkg"
ls -l "$dir" >&2
