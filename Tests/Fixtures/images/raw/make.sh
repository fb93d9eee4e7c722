#!/usr/bin/env bash
# Raw inputs with no structure: empty, tiny, sparse, random. Usage: make.sh OUTDIR
set -euo pipefail
out=$1; mkdir -p "$out"; cd "$out"
: > empty.img
printf 'x' > one-byte.img
truncate -s 1G sparse-1g.img
truncate -s $((1024*1024*1024 + 512)) sparse-1g-plus-sector.img
# Deterministic pseudo-random bytes (no format magic at the probed offsets).
python3 -c "import random,sys; r=random.Random(7); sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range(1<<20)))" > random-1m.img
qemu-img create -q -f raw qemu-64m.raw 64M
