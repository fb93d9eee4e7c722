#!/usr/bin/env bash
# `imgtool check --output=json` against `qemu-img check --output=json -f DRIVER` on 100 GiB-virtual
# qcow2, vmdk, vdi and vhdx images holding a few hundred scattered 64 KiB writes, and on a
# compressed qcow2, in one hyperfine run, plus peak RSS.
# Rerun: bench/check.sh   (images are kept in bench/work/check/; delete it to remake them)
source "$(dirname "$0")/lib.sh"
ensure_tools
build_release

dir=$work/check
writes=${WRITES:-300}
if [ ! -f "$dir/.done" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  echo "bench: making 100 GiB images with $writes scattered 64 KiB writes in $dir"
  cmds=()
  while read -r off; do cmds+=(-c "write -q -P 0xab $off 64k"); done < <(offsets "$writes" 100)
  for pair in disk.qcow2:qcow2 disk.vmdk:vmdk disk.vdi:vdi disk.vhdx:vhdx; do
    f=${pair%%:*}; drv=${pair#*:}
    qemu-img create -q -f "$drv" "$dir/$f" 100G
    qemu-io -f "$drv" "${cmds[@]}" "$dir/$f" >/dev/null
  done
  # A compressed qcow2 (every written cluster compressed), from a smaller image with the same data pattern.
  qemu-img create -q -f qcow2 "$dir/src.qcow2" 10G
  small=()
  while read -r off; do small+=(-c "write -q -P 0xab $off 64k"); done < <(offsets "$writes" 10)
  qemu-io -f qcow2 "${small[@]}" "$dir/src.qcow2" >/dev/null
  qemu-img convert -c -f qcow2 -O qcow2 "$dir/src.qcow2" "$dir/compressed.qcow2"
  rm -f "$dir/src.qcow2"
  touch "$dir/.done"
fi

set --
for pair in disk.qcow2:qcow2 compressed.qcow2:qcow2 disk.vmdk:vmdk disk.vdi:vdi disk.vhdx:vhdx; do
  f=${pair%%:*}; drv=${pair#*:}
  set -- "$@" "$f" "$imgtool check --output=json $dir/$f" "qemu-img check --output=json -f $drv $dir/$f"
done
echo "bench: hyperfine --warmup 3 --runs 30 (one run over every image; exit statuses ignored)"
compare "$work/check.json" 3 30 "$@"
echo
echo "ratio = imgtool median / qemu-img median (below 1: imgtool is faster). Raw data: $work/check.json"
echo "Rerun: bench/check.sh   (WRITES=N bench/check.sh after deleting $dir changes the number of writes)"
