#!/usr/bin/env bash
# Installs what building imgtool needs: the C libraries' -dev packages. Idempotent and quick when
# everything is present. Pass extra package names to install them too (the test script does).
set -euo pipefail
need=(pkg-config zlib1g-dev liblzma-dev libzstd-dev liblz4-dev libssl-dev "$@")
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { [ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH; }
command -v swift >/dev/null || { echo "swift toolchain not found" >&2; exit 1; }
