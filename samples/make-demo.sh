#!/usr/bin/env bash
# Regenerates samples/demo.qcow2: a 64 MiB disk with an MBR and one ext4 partition, compressed qcow2.
set -euo pipefail
cd "$(dirname "$0")"
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
truncate -s 64M "$t/disk.raw"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$t/disk.raw"
truncate -s 63M "$t/part.raw"
mkfs.ext4 -q -F -L demo-root -U 8a0c2ab4-96a0-4a4f-8b8e-2d1f3c1b5e01 -E root_owner=0:0 "$t/part.raw"
dd if="$t/part.raw" of="$t/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
qemu-img convert -c -f raw -O qcow2 "$t/disk.raw" demo.qcow2
