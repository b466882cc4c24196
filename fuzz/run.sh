#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each and prints the executions per
# target as a markdown table.
#
#   bash fuzz/run.sh 20      # CI: a short pass over every target
#   bash fuzz/run.sh 300     # the runs BENCHMARKS.md records
#
# Needs the nightly toolchain (cargo-fuzz builds with sanitizers); installs
# cargo-fuzz from crates.io and a C++ compiler from Debian when missing.
# Seeds come from fuzz/corpus/<target>/ and stay untouched: what a run
# learns goes to fuzz/target/corpus/<target>/. Exits non-zero when a target
# crashes (the input lands in fuzz/artifacts/<target>/) or cannot be built.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

SECONDS_EACH=${1:-}
if ! [[ $SECONDS_EACH =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: fuzz/run.sh SECONDS (per target)" >&2
  exit 2
fi

say() { printf '%s\n' "$*" >&2; }

if ! rustup toolchain list | grep -q '^nightly'; then
  say "the nightly toolchain is needed: rustup toolchain install nightly"
  exit 1
fi
if ! command -v c++ >/dev/null; then
  say "installing g++ (libFuzzer is C++)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

say "building the fuzz targets"
cargo +nightly fuzz build --debug-assertions >&2

mkdir -p target/logs
failed=()
rows=()
for target in $(cargo +nightly fuzz list); do
  mkdir -p "target/corpus/$target" "corpus/$target"
  say "fuzzing $target for $SECONDS_EACH s"
  log=target/logs/$target.log
  if cargo +nightly fuzz run --debug-assertions "$target" \
    "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1; then
    verdict="no crash"
  else
    verdict="CRASH: see $log and artifacts/$target/"
    failed+=("$target")
  fi
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$log" | tail -n 1)
  execs=${runs% *}
  secs=${runs#* }
  rate=$(awk -v r="${execs:-0}" -v s="${secs:-0}" 'BEGIN { if (s > 0) printf "%d", r / s; else print "–" }')
  corpus=$(find "target/corpus/$target" -type f | wc -l)
  rows+=("| \`$target\` | ${execs:-–} | ${secs:-–} | $rate | $corpus | $verdict |")
done

echo "| target | executions | seconds | per second | corpus | verdict |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"

if ((${#failed[@]})); then
  say "crashed: ${failed[*]}"
  exit 1
fi
