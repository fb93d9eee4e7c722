#!/usr/bin/env bash
# `imgtool info --checksum` (MD5 and SHA-512 in one pass, SHA-512 on a second thread) against
# md5sum followed by sha512sum, on a 1 GiB file of data (read from the page cache after warm-up).
# Rerun: bench/checksum.sh   (the file is kept in bench/work/checksum/)
source "$(dirname "$0")/lib.sh"
ensure_tools
build_release

dir=$work/checksum
if [ ! -f "$dir/.done" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  echo "bench: writing 1 GiB of pseudo-random data to $dir/data.img"
  # Cheap deterministic data: a 16 MiB random block, repeated with a counter so no block repeats.
  head -c $((16 << 20)) /dev/urandom > "$dir/block"
  for i in $(seq 1 64); do printf '%016d' "$i"; cat "$dir/block"; done | head -c $((1 << 30)) > "$dir/data.img"
  rm -f "$dir/block"
  touch "$dir/.done"
fi
img=$dir/data.img
cat > "$dir/both.sh" <<SH
#!/bin/sh
md5sum "$img" && sha512sum "$img"
SH
chmod +x "$dir/both.sh"
a_name=imgtool b_name=md5+sha512
echo "bench: hyperfine --warmup 1 --runs 5"
compare "$work/checksum.json" 1 5 "1 GiB" "$imgtool info --checksum --output=json $img" "$dir/both.sh"
echo
hyperfine -N --style basic --warmup 1 --runs 5 "md5sum $img" "sha512sum $img" 2>/dev/null | grep -E '^Benchmark|Time'
echo
echo "ratio = imgtool / (md5sum then sha512sum). Rerun: bench/checksum.sh"
