#!/usr/bin/env bash
# The whole test suite: installs the reference tools the tests compare against and the tools that
# make the fixtures, builds, runs every XCTest, then a short bounded fuzzing pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh qemu-utils xorriso genisoimage fdisk gdisk cryptsetup-bin dosfstools mtools \
  e2fsprogs xfsprogs ntfs-3g btrfs-progs squashfs-tools cpio xz-utils zstd lz4 gzip tar \
  clang libclang-rt-14-dev bzip2
export PATH=/opt/swift/usr/bin:$PATH
swift build
swift test 2>&1 | tee /tmp/imgtool-test.log | grep -vE '^\[[0-9]+/[0-9]+\]|^Test Case .* (started|passed)'
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || exit "$status"
if [ -x fuzz/run.sh ] && [ "${SKIP_FUZZ:-0}" != 1 ]; then
  bash fuzz/run.sh --ci
fi
