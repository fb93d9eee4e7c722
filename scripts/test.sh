#!/usr/bin/env bash
# The whole test suite: installs the reference tools the tests compare against and the tools that
# make the fixtures, builds, runs every XCTest, then a short bounded fuzzing pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh qemu-utils xorriso genisoimage fdisk gdisk cryptsetup-bin dosfstools mtools \
  e2fsprogs xfsprogs ntfs-3g btrfs-progs squashfs-tools cpio xz-utils zstd lz4 gzip tar \
  clang libclang-rt-14-dev isolinux bzip2 strace
export PATH=/opt/swift/usr/bin:$PATH
# The cap tests build 2^23-block tables; they take ~10 s each in a debug build, fine for the full suite.
export IMGTOOL_SLOW_TESTS=${IMGTOOL_SLOW_TESTS:-1}
swift build 2>&1 | { grep -vE '^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Linking|Write|Wrapping|Applying)' || true; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
swift test --disable-swift-testing 2>&1 | tee "$log" | grep -vE '^\[[0-9]+/[0-9]+\]|^Test Case .* (started|passed)'
status=${PIPESTATUS[0]}
set -e
fuzz=0
if [ "$status" -eq 0 ] && [ -f fuzz/run.sh ] && [ "${SKIP_FUZZ:-0}" != 1 ]; then
  bash fuzz/run.sh --ci || fuzz=1
fi
# One plain closing line: XCTest's totals (the 'All tests' summary), plus the fuzzing pass.
summary=$(grep -E "Executed [0-9]+ tests?, with" "$log" | tail -1)
total=$(echo "$summary" | grep -oE 'Executed [0-9]+' | grep -oE '[0-9]+' || true)
failed=$(echo "$summary" | grep -oE '[0-9]+ failures?' | head -1 | grep -oE '[0-9]+' || true)
skipped=$(echo "$summary" | grep -oE '[0-9]+ tests? skipped' | grep -oE '[0-9]+' || true)
total=${total:-0}; failed=${failed:-0}; skipped=${skipped:-0}
[ "$status" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
failed=$((failed + fuzz))
echo "tests: $((total - failed - skipped + fuzz)) passed, $failed failed, $skipped skipped"
[ "$status" -eq 0 ] && [ "$fuzz" -eq 0 ]
