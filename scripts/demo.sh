#!/usr/bin/env bash
# Builds imgtool (release) and runs the main job on the bundled sample image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH=/opt/swift/usr/bin:$PATH
swift build -c release --static-swift-stdlib 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
bin=$(swift build -c release --show-bin-path)/imgtool
echo "\$ imgtool info samples/demo.qcow2"
"$bin" info samples/demo.qcow2
echo
echo "\$ imgtool info --output=json samples/demo.qcow2"
"$bin" info --output=json samples/demo.qcow2
echo
echo "\$ imgtool check samples/demo.qcow2"
"$bin" check samples/demo.qcow2 | tail -12
