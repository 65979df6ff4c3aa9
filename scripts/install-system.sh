#!/usr/bin/env bash
# Installs the Debian packages Ferry's lab and tests need. Idempotent.
# QEMU 10 + libvirt 11 come from bookworm-backports: Debian 12's QEMU 7.2
# corrupts TCG guests during multi-pass live migration.  Prometheus and
# Chromium are for the tests of what operators watch (a real scrape, a real
# browser); like PostgreSQL, none of them is started by this script.
set -euo pipefail

WITH_CEPH=${WITH_CEPH:-1}
STAMP=/var/lib/ferry-install.stamp
want_stamp="v5 ceph=$WITH_CEPH"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] && command -v libvirtd >/dev/null \
   && command -v qemu-system-x86_64 >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-system.sh must run as root (it installs Debian packages)" >&2
  exit 1
fi

# Add bookworm-backports reusing the machine's own Debian mirror URI, so no
# mirror host name is ever written into this repository.
BP=/etc/apt/sources.list.d/ferry-backports.sources
if [ ! -f "$BP" ]; then
  src=/etc/apt/sources.list.d/debian.sources
  uri=""
  if [ -f "$src" ]; then
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$src")
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '/^deb / && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  if [ -z "$uri" ]; then
    echo "cannot find the machine's Debian mirror URI to add bookworm-backports" >&2
    exit 1
  fi
  cat > "$BP" <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends -t bookworm-backports \
  qemu-system-x86 qemu-utils qemu-block-extra \
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev \
  libvirt-daemon-driver-storage-rbd libvirt-daemon-driver-secret \
  libvirt-daemon-driver-network libvirt-daemon-driver-interface
apt-get install -y -q --no-install-recommends \
  busybox-static cpio iproute2 pkg-config gcc libc6-dev make dpkg-dev \
  python3-venv util-linux procps kmod postgresql-15 \
  prometheus chromium chromium-driver
if [ "$WITH_CEPH" = 1 ]; then
  apt-get install -y -q --no-install-recommends \
    ceph-mon ceph-mgr ceph-osd ceph-common
fi
echo "$want_stamp" > "$STAMP"
