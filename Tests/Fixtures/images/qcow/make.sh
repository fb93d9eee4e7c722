#!/usr/bin/env bash
# Generates the qcow fixture group (qcow2 v2/v3 variants, legacy qcow, qed, luks) into OUTDIR
# with qemu-img, qemu-io and cryptsetup. Every image is small and sparse; the whole group takes a
# few seconds. Deterministic apart from timestamps and UUIDs, which no manifest entry depends on.
set -euo pipefail
out=${1:?usage: make.sh OUTDIR}
mkdir -p "$out"
cd "$out"
q() { qemu-img "$@" >/dev/null; }
# QEMU benchmarks PBKDF2 on thread CPU time and gives up ("Unable to get accurate CPU usage") when
# a coarse clock reads 0 ms for one round; a retry gets a fresh measurement.
q_retry() { local i; for i in $(seq 30); do qemu-img "$@" >/dev/null 2>&1 && return 0; done; qemu-img "$@" >/dev/null; }

# qcow2 versions and cluster sizes.
q create -f qcow2 -o compat=0.10 v2.qcow2 64M
q create -f qcow2 -o compat=1.1 v3.qcow2 1G
q create -f qcow2 -o cluster_size=512 c512.qcow2 16M
q create -f qcow2 -o cluster_size=2M c2m.qcow2 1G
# Features.
q create -f qcow2 -o lazy_refcounts=on lazy.qcow2 64M
q create -f qcow2 -o refcount_bits=1 rc1.qcow2 64M
q create -f qcow2 -o refcount_bits=16 rc16.qcow2 64M
q create -f qcow2 -o refcount_bits=64 rc64.qcow2 64M
q create -f qcow2 -o extended_l2=on,cluster_size=128k el2.qcow2 64M
q create -f qcow2 -o compression_type=zstd zstd.qcow2 64M
# External references: a backing file (raw) and an external data file.
q create -f raw base.raw 32M
q create -f qcow2 -b base.raw -F raw overlay.qcow2 32M
q create -f qcow2 -o data_file=data.raw,data_file_raw=on datafile.qcow2 16M
# Encryption (LUKS inside qcow2). The secret is a fixture constant, not a real key.
q_retry create -f qcow2 --object secret,id=sec0,data=fixture-secret \
  -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 enc.qcow2 16M
# Snapshot and bitmap.
q create -f qcow2 snap.qcow2 64M
qemu-io -f qcow2 -c 'write -P 0x5a 0 128k' snap.qcow2 >/dev/null
q snapshot -c first snap.qcow2
qemu-io -f qcow2 -c 'write -P 0xa5 64k 64k' snap.qcow2 >/dev/null
q create -f qcow2 bitmap.qcow2 64M
q bitmap --add -g 64k bitmap.qcow2 b0
# Several snapshots, one deleted, with copy-on-write data between them (shared L2 tables and
# data clusters with refcount 2, freed clusters, fragmentation).
q create -f qcow2 -o compat=0.10 snaps.qcow2 64M
qemu-io -f qcow2 -c 'write -P 1 0 192k' -c 'write -P 2 32M 64k' snaps.qcow2 >/dev/null
q snapshot -c a snaps.qcow2
qemu-io -f qcow2 -c 'write -P 3 64k 64k' snaps.qcow2 >/dev/null
q snapshot -c b snaps.qcow2
qemu-io -f qcow2 -c 'write -P 4 0 64k' -c 'write -P 5 48M 64k' snaps.qcow2 >/dev/null
q snapshot -d a snaps.qcow2
# Metadata preallocation: every L2 table and refcount block of a 4 GiB disk (sparse file).
q create -f qcow2 -o preallocation=metadata prealloc.qcow2 4G
# Data at the narrowest and widest refcount widths.
qemu-io -f qcow2 -c 'write -P 6 0 128k' -c 'write -P 7 10M 64k' rc1.qcow2 >/dev/null
qemu-io -f qcow2 -c 'write -P 8 0 128k' rc64.qcow2 >/dev/null
# Data written with extended L2 subclusters and zstd, then a compressed conversion.
qemu-io -f qcow2 -c 'write -P 0x11 0 4k' -c 'write -P 0x22 1M 64k' el2.qcow2 >/dev/null
qemu-io -f qcow2 -c 'write -P 0x33 0 64k' zstd.qcow2 >/dev/null
# A small raw disk with compressible, non-zero content for the compressed conversion.
q create -f raw content.raw 1M
qemu-io -f raw -c 'write -P 0x11 0 256k' -c 'write -P 0x22 256k 256k' -c 'write -P 0x33 768k 64k' content.raw >/dev/null
q convert -f raw -O qcow2 -c content.raw compressed.qcow2
q convert -f raw -O qcow2 -c -o compression_type=zstd content.raw compressed-zstd.qcow2
rm -f content.raw
# Refcount damage, made by editing one 16-bit refcount entry of a fresh 64 KiB-cluster image
# (clusters: 0 header, 1 refcount table, 2 refcount block, 3 L1 table).
be64() { od -An -tx1 -j "$2" -N8 "$1" | tr -d ' \n'; }
set_refcount() {  # FILE CLUSTER VALUE
  local rt=$((16#$(be64 "$1" 48)))
  local rb=$((16#$(be64 "$1" "$rt")))
  printf "\\x$(printf %02x $(($3 >> 8)))\\x$(printf %02x $(($3 & 255)))" |
    dd of="$1" bs=1 seek=$((rb + 2 * $2)) conv=notrunc status=none
}
# A leaked cluster: cluster 4 has refcount 1 and nothing refers to it (qemu-img check: 1 leak).
cp v3.qcow2 leak.qcow2
truncate -s 320k leak.qcow2
set_refcount leak.qcow2 4 1
# A corruption: the L1 table's cluster has refcount 0 (qemu-img check: 1 corruption).
cp v3.qcow2 refcount-zero.qcow2
set_refcount refcount-zero.qcow2 3 0
# Damaged images whose qemu-img check counts the deep check must reproduce. The base has data in
# four L2 tables of a 4 GiB disk; each copy has one 64-bit table entry rewritten.
poke64() {  # FILE OFFSET VALUE (VALUE may have bit 63 set; bash arithmetic is 64-bit two's complement)
  local hex; hex=$(printf %016x "$3")
  printf "$(echo "$hex" | sed 's/../\\x&/g')" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
q create -f qcow2 damaged.qcow2 4G
qemu-io -f qcow2 -c 'write -P 1 0 256k' -c 'write -P 2 40M 64k' -c 'write -P 3 1G 64k' -c 'write -P 3 3G 64k' \
  damaged.qcow2 >/dev/null
l1=$((16#$(be64 damaged.qcow2 40)))
rt=$((16#$(be64 damaged.qcow2 48)))
l2=$((16#$(be64 damaged.qcow2 "$l1") & 0x00fffffffffffe00))
copied=$((1 << 63))
mk_damaged() { cp damaged.qcow2 "$1"; poke64 "$1" "$2" "$3"; }
mk_damaged damaged-copied.qcow2 "$l2" $((16#$(be64 damaged.qcow2 "$l2") & ~copied))     # COPIED flag cleared
mk_damaged damaged-overlap.qcow2 $((l2 + 8)) $((l1 | copied))                            # data cluster = L1 table
mk_damaged damaged-l2-eof.qcow2 $((l2 + 16)) $(((1 << 36) | copied))                     # data far past the end
mk_damaged damaged-l1-dup.qcow2 $((l1 + 16)) $((16#$(be64 damaged.qcow2 "$l1")))         # one L2 table named twice
mk_damaged damaged-l1-eof.qcow2 $((l1 + 16)) $(((1 << 40) | copied))                     # L2 table past the end
mk_damaged damaged-l1-rt.qcow2 $((l1 + 16)) $((rt | copied))                             # L2 table = refcount table
mk_damaged damaged-compressed.qcow2 $((l2 + 800)) $((copied | (1 << 62) | (5 << 16)))    # compressed with COPIED
mk_damaged damaged-rt-eof.qcow2 $((rt + 8)) $((1 << 40))                                 # refcount block past the end
mk_damaged damaged-l2-reserved.qcow2 $((l2 + 8)) $((16#$(be64 damaged.qcow2 $((l2 + 8))) | (1 << 57)))
# A truncated image: the snapshot's tables and data are cut off.
cp snap.qcow2 truncated.qcow2
truncate -s 300000 truncated.qcow2
# Legacy qcow (v1), QED.
q create -f qcow legacy.qcow 64M
q create -f qcow -b base.raw -F raw legacy-backing.qcow
q create -f qed v.qed 64M
q create -f qed -b base.raw -F raw backing.qed
q create -f qed data.qed 64M
qemu-io -f qed -c 'write -P 1 0 128k' -c 'write -P 2 40M 64k' data.qed >/dev/null
# A QED leak: one cluster appended that no table references (qemu-img check: 1 leak).
cp v.qed leak.qed
truncate -s +64k leak.qed
# LUKS: qemu's luks driver (LUKS1) and cryptsetup LUKS1/LUKS2 on small files.
q_retry create -f luks --object secret,id=sec0,data=fixture-secret -o key-secret=sec0,iter-time=10 qemu.luks 16M
printf 'fixture-secret' > key.txt
truncate -s 8M luks1.img luks2.img luks2-argon.img
# Fixed iteration counts skip cryptsetup's benchmark, so each format takes milliseconds.
cryptsetup luksFormat --batch-mode --type luks1 --pbkdf-force-iterations 1000 --key-file key.txt luks1.img
cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
  --luks2-metadata-size 64k --luks2-keyslots-size 4m \
  --key-file key.txt luks2.img
cryptsetup luksFormat --batch-mode --type luks2 --pbkdf argon2id --pbkdf-memory 32 --pbkdf-parallel 1 \
  --pbkdf-force-iterations 4 --luks2-metadata-size 16k --luks2-keyslots-size 1m --key-file key.txt luks2-argon.img >/dev/null \
  2>/dev/null
rm -f key.txt
