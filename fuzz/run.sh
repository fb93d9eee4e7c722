#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/targets/, seeds their corpora and fuzzes each for a bounded
# time. A crash, leak, out-of-memory or timeout (a hang is a bug) makes the script exit non-zero
# after minimising the input and printing where the reproducer is.
#
# usage: fuzz/run.sh [--ci] [--seconds N] [--no-build] [TARGET...]
#   TARGET      qcow vhd vmdk disc containers all (default: every target)
#   --seconds N fuzz each target for N seconds (default 60)
#   --ci        a bounded pass for the test suite: `all` for 40 s, every other target for 4 s
#   --no-build  use the binaries already in fuzz/out/
# Environment: FUZZ_MAX_LEN (bytes, overrides the per-target input cap), FUZZ_ARGS (extra libFuzzer flags).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH=/opt/swift/usr/bin:$PATH

out=fuzz/out
corpus_root=fuzz/corpus
regressions=fuzz/regressions
fixtures=Tests/Fixtures/images
seconds=60
ci=0
build=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ci) ci=1 ;;
    --seconds) seconds=${2:?--seconds needs a value}; shift ;;
    --seconds=*) seconds=${1#--seconds=} ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz/run.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
all_targets=()
for f in fuzz/targets/*.swift; do
  n=$(basename "$f" .swift)
  [ "$n" = Driver ] || all_targets+=("$n")
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [ -f "fuzz/targets/$t.swift" ] || { echo "fuzz/run.sh: no target '$t' (have: ${all_targets[*]})" >&2; exit 2; }
done

# Largest input per target (seeds are cut to it). Structures sit at 64 KiB and beyond (qcow2
# tables, the ISO volume descriptors at 32 KiB, VHD footers at the end), so 1 MiB; VHDX puts its
# metadata region and BAT at 2-3 MiB, so its target gets 4 MiB. Larger inputs fuzz slower (every
# execution copies and scans them), so the rest stay at 1 MiB.
max_len_for() {
  if [ -n "${FUZZ_MAX_LEN:-}" ]; then echo "$FUZZ_MAX_LEN"; return; fi
  case "$1" in
    vhd) echo $((4 << 20)) ;;
    *) echo $((1 << 20)) ;;
  esac
}
seconds_for() {
  if [ "$ci" = 1 ]; then
    if [ "$1" = all ]; then echo 40; else echo 4; fi
  else
    echo "$seconds"
  fi
}

mkdir -p "$out/logs" "$out/artifacts"

# ---- build -------------------------------------------------------------------------------------
# FormatProbe is compiled once into an instrumented static library; each target is its own small
# module (the driver plus one entry point) linked against it.
inc=(-I Sources/CZlib -I Sources/CLzma -I Sources/CZstd -I Sources/CLz4 -I Sources/CCrypto)
libs=(-lz -llzma -lzstd -llz4 -lcrypto)
sanitize=(-sanitize=fuzzer,address)
linker=()
command -v ld.lld >/dev/null 2>&1 && linker=(-use-ld=lld)

build_all() {
  command -v swiftc >/dev/null || { echo "fuzz/run.sh: swiftc not found" >&2; return 1; }
  local sources stamp want
  mapfile -t sources < <(find Sources/FormatProbe -name '*.swift' | LC_ALL=C sort)
  want=$( (printf '%s\n' "${sources[@]}" | xargs stat -c '%n %Y %s'; swiftc --version 2>&1) | sha1sum | cut -c1-40)
  stamp=$out/libFormatProbe.stamp
  if [ ! -f "$out/libFormatProbe.a" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "fuzz: building instrumented FormatProbe (${#sources[@]} files)"
    rm -f "$stamp"
    swiftc -parse-as-library -O -wmo "${sanitize[@]}" "${inc[@]}" -module-name FormatProbe \
      -emit-module -emit-module-path "$out/FormatProbe.swiftmodule" \
      -emit-library -static -o "$out/libFormatProbe.a" "${sources[@]}" || return 1
    echo "$want" > "$stamp"
  fi
  local t bin
  for t in "${targets[@]}"; do
    bin=$out/fuzz-$t
    if [ ! -x "$bin" ] || [ "$out/libFormatProbe.a" -nt "$bin" ] || [ "fuzz/targets/$t.swift" -nt "$bin" ] \
       || [ fuzz/targets/Driver.swift -nt "$bin" ]; then
      echo "fuzz: linking $bin"
      swiftc -parse-as-library -O "${sanitize[@]}" "${linker[@]}" "${inc[@]}" -I "$out" -L "$out" -lFormatProbe \
        -module-name "Fuzz_$t" fuzz/targets/Driver.swift "fuzz/targets/$t.swift" -o "$bin" "${libs[@]}" || return 1
    fi
  done
}

if [ "$build" = 1 ]; then
  build_start=$(date +%s)
  build_all || { echo "fuzz/run.sh: build failed" >&2; exit 1; }
  echo "fuzz: build took $(( $(date +%s) - build_start )) s"
fi

# ---- seeds -------------------------------------------------------------------------------------
# Generated fixture images (made by each group's make.sh, as the test suite does when they are
# missing), committed hostile fixtures, minimised regressions, and the built-in seeds.
for script in "$fixtures"/*/make.sh; do
  [ -f "$script" ] || continue
  group=$(basename "$(dirname "$script")")
  gen=$fixtures/generated/$group
  if [ ! -f "$gen/.done" ] || [ "$script" -nt "$gen/.done" ]; then
    echo "fuzz: generating fixtures for $group"
    rm -rf "$gen" && mkdir -p "$gen"
    if bash "$script" "$root/$gen" >"$out/logs/make-$group.log" 2>&1; then
      touch "$gen/.done"
    else
      echo "fuzz: $group/make.sh failed (see $out/logs/make-$group.log); using what it made" >&2
    fi
  fi
done
if [ ! -f "$out/seeds/.done" ] || [ fuzz/seeds.sh -nt "$out/seeds/.done" ]; then
  rm -rf "$out/seeds"
  bash fuzz/seeds.sh "$out/seeds" 2>"$out/logs/seeds.log" && touch "$out/seeds/.done"
fi
seed_files() {
  {
    [ -d "$fixtures/generated" ] && find "$fixtures/generated" -type f ! -name '.*'
    for d in "$fixtures"/*/; do
      [ "$d" = "$fixtures/generated/" ] && continue
      find "$d" -maxdepth 1 -type f ! -name make.sh ! -name manifest.json ! -name '*.md' ! -name '.*' 2>/dev/null
    done
    [ -d "$regressions" ] && find "$regressions" -type f ! -name '.*' ! -name '*.md'
    find "$out/seeds" -type f ! -name '.*'
  } | LC_ALL=C sort
}
seed_corpus() { # target max_len
  local dir=$corpus_root/$1 n=0 f h
  mkdir -p "$dir"
  while IFS= read -r f; do
    h=$(head -c "$2" "$f" | sha1sum | cut -c1-40)
    [ -f "$dir/$h" ] || head -c "$2" "$f" > "$dir/$h"
    n=$((n + 1))
  done < <(seed_files)
  echo "$n"
}

# ---- fuzz --------------------------------------------------------------------------------------
# A smaller quarantine keeps the resident set well under -rss_limit_mb on long runs (Swift code
# rarely frees and reuses by hand, so use-after-free detection loses little).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:handle_abort=1:quarantine_size_mb=64:malloc_context_size=8}
# Swift's own crash backtracer fights the sanitizer's handler (and can hang); libFuzzer prints the stack.
export SWIFT_BACKTRACE=enable=no
failed=()
rows=()
final_stat() { grep -m1 "^stat::$1:" "$2" | awk '{print $2}'; }
for t in "${targets[@]}"; do
  bin=$out/fuzz-$t
  [ -x "$bin" ] || { echo "fuzz/run.sh: $bin is not built" >&2; exit 1; }
  len=$(max_len_for "$t")
  secs=$(seconds_for "$t")
  nseeds=$(seed_corpus "$t" "$len")
  art=$out/artifacts/$t
  rm -rf "$art" && mkdir -p "$art"
  log=$out/logs/$t.log
  echo "fuzz: $t for ${secs}s ($nseeds seeds, max_len $len)"
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$secs" -max_len="$len" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
    -print_final_stats=1 -dict=fuzz/images.dict -artifact_prefix="$art/" ${FUZZ_ARGS:-} \
    "$corpus_root/$t" >"$log" 2>&1
  rc=$?
  execs=$(final_stat number_of_executed_units "$log"); rate=$(final_stat average_exec_per_sec "$log")
  added=$(final_stat new_units_added "$log"); rss=$(final_stat peak_rss_mb "$log")
  cov0=$(grep -m1 -o 'INITED cov: [0-9]*' "$log" | awk '{print $3}')
  cov1=$(grep -o ' cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  result=ok
  artifact=$(grep -o 'Test unit written to .*' "$log" | head -1 | sed 's/Test unit written to //')
  if [ "$rc" != 0 ] || [ -n "$artifact" ]; then
    kind=$(grep -m1 -oE '(libFuzzer|AddressSanitizer|LeakSanitizer): [a-zA-Z-]+( signal| after [0-9]+ seconds| \(malloc\([0-9]+\)\))?' "$log")
    result="FAILED (${kind:-exit $rc})"
    failed+=("$t")
    echo "fuzz: $t FAILED: ${kind:-exit status $rc}; log: $log"
    grep -m4 -E 'Fatal error|ERROR:|SUMMARY' "$log" | sed 's/^/    /'
    # The first frames of the crashing input's stack that are ours, demangled.
    grep -E '^ +#[0-9]+ 0x' "$log" | grep -vE 'compiler-rt|libc\.so|libc_start|in _start ' | head -8 \
      | { swift demangle --simplified 2>/dev/null || cat; } | sed -E 's/^ +/    /; s/ \(BuildId: [0-9a-f]+\)//'
    if [ -n "$artifact" ] && [ -f "$artifact" ]; then
      min=$art/minimized-$(basename "$artifact")
      mt=60; [ "$ci" = 1 ] && mt=15
      "$bin" -minimize_crash=1 -max_total_time=$mt -runs=100000 -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=1024 -exact_artifact_path="$min" "$artifact" >"$log.minimize" 2>&1
      [ -s "$min" ] || min=$artifact
      echo "fuzz: reproducer: $artifact ($(stat -c %s "$artifact") bytes)"
      echo "fuzz: minimised:  $min ($(stat -c %s "$min") bytes)"
      echo "fuzz: replay with: $bin $min"
      echo "fuzz: keep it as a regression: cp $min $regressions/$t-SHORT-NAME"
    fi
  fi
  rows+=("$(printf '%-11s %5ss %11s %8s %13s %7s %7s  %s' "$t" "$secs" "${execs:-?}" "${rate:-?}" \
    "${cov0:-?}->${cov1:-?}" "${added:-?}" "${rss:-?}MB" "$result")")
done

echo
printf '%-11s %6s %11s %8s %13s %7s %7s  %s\n' target time execs exec/s coverage new-units rss result
for r in "${rows[@]}"; do echo "$r"; done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED targets: ${failed[*]} (logs and reproducers under $out/)"
  exit 1
fi
echo "fuzz: no crashes, leaks or timeouts. Rerun: fuzz/run.sh [--seconds N] [TARGET...]"
