#!/usr/bin/env bash
# Generates the VMDK, VDI and ploop fixtures with qemu-img into OUTDIR (deterministic content;
# qemu-img picks random CIDs/UUIDs, so manifests never pin those).
set -euo pipefail
out=${1:?usage: make.sh OUTDIR}
mkdir -p "$out"
cd "$out"
q() { qemu-img "$@" >/dev/null; }

# 3 MiB of deterministic, compressible-but-not-trivial data with a hole in the middle.
seq 1 400000 | head -c 3145728 > data.raw
truncate -s 3145728 data.raw
dd if=/dev/zero of=data.raw bs=65536 seek=16 count=4 conv=notrunc status=none

# Hosted sparse extents (one file each).
q create -f vmdk mono.vmdk 64M
q convert -f raw -O vmdk data.raw mono-data.vmdk
q create -f vmdk -o subformat=streamOptimized stream.vmdk 64M
q convert -f raw -O vmdk -o subformat=streamOptimized data.raw stream-data.vmdk
q create -f vmdk -o compat6=on,adapter_type=lsilogic lsilogic-compat6.vmdk 10M
q create -f vmdk -o hwversion=7,adapter_type=buslogic,zeroed_grain=on buslogic-hw7.vmdk 10M
q create -f vmdk -o adapter_type=legacyESX legacyesx.vmdk 10M
q create -f vmdk -b mono.vmdk -F vmdk child.vmdk

# Descriptor + extent files: the descriptor is the fixture, the extents sit next to it.
q create -f vmdk -o subformat=twoGbMaxExtentSparse split-sparse.vmdk 3G
q create -f vmdk -o subformat=monolithicFlat flat.vmdk 1M
q create -f vmdk -o subformat=twoGbMaxExtentFlat split-flat.vmdk 3M

# streamOptimized the way VMware writes it when streaming: gdOffset in the header is GD_AT_END
# and the real header follows a footer marker at the end, then an end-of-stream marker.
# Built from qemu's stream by appending footer marker + original header + EOS marker.
zeros() { head -c "$1" /dev/zero; }
cp stream-data.vmdk stream-footer.vmdk
{
  printf '\001\000\000\000\000\000\000\000\000\000\000\000\003\000\000\000'; zeros 496   # footer marker
  head -c 512 stream-data.vmdk                                                          # footer header
  zeros 512                                                                             # end-of-stream
} >> stream-footer.vmdk
printf '\377\377\377\377\377\377\377\377' | dd of=stream-footer.vmdk bs=1 seek=56 conv=notrunc status=none

# VirtualBox VDI.
q create -f vdi dynamic.vdi 64M
q create -f vdi -o static=on static.vdi 4M
q convert -f raw -O vdi data.raw data.vdi

# Parallels / ploop.
q create -f parallels ploop.hds 64M
q convert -f raw -O parallels data.raw ploop-data.hds

rm -f data.raw
