#!/usr/bin/env bash
# Installs what the real-kernel harness (package realkernel) needs and
# caches two Debian cloud kernels inside the clone, in .realkernel/ (git
# ignores it; nothing is cached outside the clone):
#
#   .realkernel/<release>/vmlinuz
#   .realkernel/<release>/modules/<name>.ko[.xz]   only the modules vsock needs
#   .realkernel/<release>/modules.order            their load order, one a line
#   .realkernel/<release>/package                  the Debian package and version
#
# Packages are pinned by name and version. As root with apt-get it installs
# qemu-system-x86 (and cpio, tshark, socat for the other tests); without
# root it only reports what is missing, and the real-kernel tests skip.
# Run it from anywhere; it is idempotent and re-extracts nothing already
# cached.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=$root/.realkernel

qemu_pkg='qemu-system-x86=1:7.2+dfsg-7+deb12u18+b3'

# Each kernel: release, package=version, then its modules in load order.
# The order follows each module's "depends=" in its .modinfo section (what
# `modinfo -F depends` prints): in the 6.12 cloud build virtio and
# virtio-pci are built in (CONFIG_VIRTIO_PCI=y), in the 6.1 build they are
# modules too.
kernels=(
  "6.12.117+deb12-cloud-amd64|linux-image-6.12.117+deb12-cloud-amd64=6.12.117-1~deb12u1|net/vmw_vsock/vsock net/vmw_vsock/vmw_vsock_virtio_transport_common net/vmw_vsock/vmw_vsock_virtio_transport"
  "6.1.0-56-cloud-amd64|linux-image-6.1.0-56-cloud-amd64=6.1.192-2|drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci net/vmw_vsock/vsock net/vmw_vsock/vmw_vsock_virtio_transport_common net/vmw_vsock/vmw_vsock_virtio_transport"
)

if ! command -v qemu-system-x86_64 >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$qemu_pkg" >/dev/null
  else
    echo "realkernel-install: qemu-system-x86_64 missing and not root with apt-get; the real-kernel tests will skip" >&2
  fi
fi

mkdir -p "$cache"
for k in "${kernels[@]}"; do
  IFS='|' read -r release pkg mods <<<"$k"
  dir=$cache/$release
  if [ -f "$dir/package" ] && [ "$(cat "$dir/package")" = "$pkg" ]; then
    echo "realkernel-install: $release cached"
    continue
  fi
  if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    echo "realkernel-install: no apt-get/dpkg-deb; cannot fetch $pkg" >&2
    continue
  fi
  tmp=$(mktemp -d "$cache/.dl.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -qq "$pkg" 2>&1 | grep -v 'Download is performed unsandboxed' >&2 || true)
  deb=$(ls "$tmp"/*.deb 2>/dev/null | head -1)
  if [ -z "$deb" ]; then
    echo "realkernel-install: could not download $pkg" >&2
    rm -rf "$tmp"; trap - EXIT
    exit 1
  fi
  # Extract only vmlinuz and the listed modules (the whole package unpacks
  # to over 100 MB).
  patterns=("./boot/vmlinuz-$release")
  for m in $mods; do patterns+=("./lib/modules/$release/kernel/$m.ko*"); done
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards "${patterns[@]}"
  rm -rf "$dir"; mkdir -p "$dir/modules"
  mv "$tmp/boot/vmlinuz-$release" "$dir/vmlinuz"
  : >"$dir/modules.order"
  for m in $mods; do
    f=$(ls "$tmp/lib/modules/$release/kernel/$m".ko* | head -1)
    mv "$f" "$dir/modules/"
    basename "$f" >>"$dir/modules.order"
  done
  echo "$pkg" >"$dir/package"
  rm -rf "$tmp"; trap - EXIT
  echo "realkernel-install: $release from $pkg: $(wc -l <"$dir/modules.order") modules"
done
