#!/usr/bin/env bash
# `imgtool info --output=json` against `qemu-img info --output=json -f DRIVER` on 1 GiB-virtual
# images of every format (scattered data written first), in one hyperfine run, plus peak RSS.
# usage: bench/info.sh [--compare-dynamic]   (also times a build with shared C libraries)
# Rerun: bench/info.sh   (images are kept in bench/work/info/; delete it to remake them)
compare_dynamic=${COMPARE_DYNAMIC:-0}
[ "${1:-}" = --compare-dynamic ] && compare_dynamic=1
source "$(dirname "$0")/lib.sh"
ensure_tools
need xorriso xorriso
build_release

dir=$work/info
if [ ! -f "$dir/.done" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  echo "bench: making 1 GiB images in $dir"
  truncate -s 1G "$dir/raw.img"
  cmds=()
  while read -r off; do cmds+=(-c "write -q -P 0xab $off 64k"); done < <(offsets 64 1)
  qemu-io -f raw "${cmds[@]}" "$dir/raw.img" >/dev/null
  conv() { qemu-img convert -f raw -O "$1" "${@:3}" "$dir/raw.img" "$dir/$2"; }
  conv qcow2 v3.qcow2 -o compat=1.1
  conv qcow2 v2.qcow2 -o compat=0.10
  conv vpc dynamic.vhd -o subformat=dynamic
  conv vpc fixed.vhd -o subformat=fixed
  conv vhdx disk.vhdx
  conv vmdk sparse.vmdk -o subformat=monolithicSparse
  conv vmdk stream.vmdk -o subformat=streamOptimized
  conv vdi disk.vdi
  mkdir -p "$dir/isoroot"
  for i in 1 2 3 4; do head -c $((i << 20)) /dev/zero | tr '\0' 'x' > "$dir/isoroot/file$i.txt"; done
  xorriso -as mkisofs -quiet -V BENCH -J -R -o "$dir/disc.iso" "$dir/isoroot" >/dev/null 2>&1
  rm -rf "$dir/isoroot"
  touch "$dir/.done"
fi

set --
for pair in raw.img:raw v3.qcow2:qcow2 v2.qcow2:qcow2 dynamic.vhd:vpc fixed.vhd:vpc disk.vhdx:vhdx \
            sparse.vmdk:vmdk stream.vmdk:vmdk disk.vdi:vdi disc.iso:raw; do
  f=${pair%%:*}; drv=${pair#*:}
  set -- "$@" "$f" "$imgtool info --output=json $dir/$f" "qemu-img info --output=json -f $drv $dir/$f"
done
if [ "$compare_dynamic" = 1 ]; then
  echo "bench: building a copy with shared C libraries (IMGTOOL_DYNAMIC_C_LIBS=1) in $work/build-dynamic"
  IMGTOOL_DYNAMIC_C_LIBS=1 swift build -c release --static-swift-stdlib --scratch-path "$work/build-dynamic" 2>&1 | tail -1
  dyn=$work/build-dynamic/release/imgtool
  a_name=imgtool b_name=qemu-img
  echo "bench: the last row compares imgtool (static C libraries) with the same build linked against shared ones"
  set -- "$@" "C libs static/shared" "$imgtool info --output=json $dir/v3.qcow2" "$dyn info --output=json $dir/v3.qcow2"
fi
echo "bench: hyperfine --warmup 3 --runs 30 (one run over every image)"
compare "$work/info.json" 3 30 "$@"
echo
echo "ratio = imgtool median / qemu-img median (below 1: imgtool is faster). Raw data: $work/info.json"
echo "Rerun: bench/info.sh [--compare-dynamic]   (the last row then compares static with shared C libraries)"
