# Shared by the bench scripts (sourced). Benchmarks are never asserted: they print numbers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH=/opt/swift/usr/bin:$PATH
work=bench/work
mkdir -p "$work"

# Installs what the benchmarks need when it is missing (they are not part of the test suite).
need() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "bench: installing $2 for $1"
  apt-get install -y -qq "$2" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$2" >/dev/null; }
}
ensure_tools() {
  need hyperfine hyperfine
  [ -x /usr/bin/time ] || need /usr/bin/time time
  need qemu-img qemu-utils
  need qemu-io qemu-utils
  need python3 python3
}

# The release binary exactly as shipped: static Swift runtime; the C libraries are static too
# unless IMGTOOL_DYNAMIC_C_LIBS=1 (see Package.swift).
build_release() {
  echo "bench: swift build -c release --static-swift-stdlib"
  swift build -c release --static-swift-stdlib 2>&1 | grep -E 'error|warning: .*unsafe|Compiling|Build' | tail -3
  imgtool=$(swift build -c release --static-swift-stdlib --show-bin-path)/imgtool
  echo "bench: $imgtool needs: $(ldd "$imgtool" | awk '{print $1}' | grep -v vdso | tr '\n' ' ')"
}

# Peak resident set of one run, in MiB.
peak_rss() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.1f", $1 / 1024}'; }

# hyperfine over pairs of commands in one run; then a table of medians and ratios.
#   compare JSON WARMUP RUNS  label1 cmdA1 cmdB1  label2 cmdA2 cmdB2 ...
# A is imgtool, B the reference tool; names for the columns come from $a_name and $b_name.
compare() {
  local json=$1 warmup=$2 runs=$3
  shift 3
  local args=() labels=() rss_a=() rss_b=()
  while [ $# -gt 0 ]; do
    labels+=("$1")
    args+=(-n "$1 ${a_name:-imgtool}" "$2" -n "$1 ${b_name:-qemu-img}" "$3")
    # shellcheck disable=SC2086
    rss_a+=("$(peak_rss $2)"); rss_b+=("$(peak_rss $3)")
    shift 3
  done
  hyperfine -N -i --style basic --warmup "$warmup" --runs "$runs" --export-json "$json" "${args[@]}" >"$json.log" 2>&1 \
    || { cat "$json.log"; return 1; }
  python3 - "$json" "${a_name:-imgtool}" "${b_name:-qemu-img}" "${labels[@]}" <<'PY' > "$json.table"
import json, sys
data = json.load(open(sys.argv[1]))["results"]
a, b, labels = sys.argv[2], sys.argv[3], sys.argv[4:]
res = {r["command"]: r for r in data}
# Medians are what the goal is stated in; minimums are the least disturbed by other load on the host.
# CPU time (user + system) is the least sensitive to other processes sharing the cores.
cpu = lambda r: r["user"] + r["system"]
print(f"{'image':<24} {a + ' ms':>11} {b + ' ms':>12} {'ratio':>6} {'min ratio':>9} {'cpu ratio':>9}")
for l in labels:
    x, y = res[f"{l} {a}"], res[f"{l} {b}"]
    print(f"{l:<24} {x['median'] * 1000:11.2f} {y['median'] * 1000:12.2f} {x['median'] / y['median']:6.2f}"
          f" {min(x['times']) / min(y['times']):9.2f} {cpu(x) / max(cpu(y), 1e-9):9.2f}")
PY
  # Append the peak RSS columns.
  local i=0 line
  {
    IFS= read -r line; printf '%s %12s %12s\n' "$line" "${a_name:-imgtool} RSS" "${b_name:-qemu-img} RSS"
    while IFS= read -r line; do
      printf '%s %10s MB %9s MB\n' "$line" "${rss_a[$i]}" "${rss_b[$i]}"
      i=$((i + 1))
    done
  } < "$json.table"
}

# Deterministic scattered 64 KiB-aligned offsets below a size in GiB: N of them (64-bit shell
# arithmetic; awk's printf %d stops at 2^31 in some implementations).
offsets() { # count gib
  local i s=12345 span=$(($2 * 16384))
  for ((i = 0; i < $1; i++)); do
    s=$(( (s * 1103515245 + 12345) % 2147483648 ))
    echo $(( ((s >> 4) % span) * 65536 ))
  done
}
