#!/usr/bin/env bash
# Measures the release binary against its budgets and prints one markdown
# table: figure, measured, budget, verdict.
#
#   bash bench/run.sh           # the full run that BENCHMARKS.md records
#   bash bench/run.sh --quick   # few runs and short loads, to check the script
#
# A missed budget prints MISS in its row and leaves the exit code at 0; the
# script exits non-zero only when it cannot run (a tool that cannot be
# installed, a build that fails). A figure that cannot be measured, such as
# the server's before the server works, prints n/a with the reason.
#
# Runs as root on Debian: hyperfine, wrk, time and curl are installed with
# apt-get when missing. All traffic stays on 127.0.0.1; every process it
# starts is stopped on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: bench/run.sh [--quick]" >&2; exit 2 ;;
esac

MIB=1048576
MUSL=x86_64-unknown-linux-musl

if ((QUICK)); then
  HELP_RUNS=10 RELOAD_RUNS=10 RSS_RUNS=1 WRK_SECONDS=2 BIG_RUNS=1
else
  HELP_RUNS=300 RELOAD_RUNS=100 RSS_RUNS=5 WRK_SECONDS=10 BIG_RUNS=5
fi

work=$(mktemp -d)
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '%s\n' "$*" >&2; }

# setup: tools, then the two release builds

install_missing_tools() {
  local missing=()
  command -v hyperfine >/dev/null || missing+=(hyperfine)
  command -v wrk >/dev/null || missing+=(wrk)
  [ -x /usr/bin/time ] || missing+=(time)
  command -v curl >/dev/null || missing+=(curl)
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

target_dir() {
  cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

build() {
  local target
  target=$(target_dir)
  if rustup target list --installed 2>/dev/null | grep -qx "$MUSL"; then
    say "building the static musl release binary"
    cargo build --release --target "$MUSL" >&2
    BIN=$target/$MUSL/release/hasura-metadata-reloader
    BUILD="static, stripped release build for $MUSL"
  else
    say "building the host release binary: the $MUSL target is not installed"
    cargo build --release >&2
    BIN=$target/release/hasura-metadata-reloader
    BUILD="host release build (the $MUSL target is not installed)"
  fi
  cargo build --release --example fake-hasura >&2
  FAKE=$target/release/examples/fake-hasura
}

# processes on loopback

# A port nothing listens on (the kernel may still hand it out meanwhile,
# which is unlikely enough here).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# start_fake NAME ARGS...: starts the fake Hasura; sets FAKE_URL. Its
# stderr, one line per request, goes to $work/NAME.log.
start_fake() {
  local name=$1
  shift
  "$FAKE" "$@" >"$work/$name.url" 2>"$work/$name.log" &
  pids+=($!)
  local i
  for ((i = 0; i < 100; i++)); do
    FAKE_URL=$(head -n 1 "$work/$name.url")
    [ -n "$FAKE_URL" ] && return 0
    sleep 0.1
  done
  say "the fake Hasura did not start: $(cat "$work/$name.log")"
  return 1
}

# start_server NAME HASURA_URL: starts `server` on a free port; sets
# SERVER_PID and SERVER_URL, or SERVER_WHY when it does not serve.
start_server() {
  local name=$1 hasura=$2 port i
  port=$(free_port)
  "$BIN" server --bind 127.0.0.1 --port "$port" --hasura-endpoint "$hasura" \
    --retry-interval 10ms >"$work/$name.out" 2>"$work/$name.err" &
  SERVER_PID=$!
  pids+=("$SERVER_PID")
  SERVER_URL=http://127.0.0.1:$port
  for ((i = 0; i < 50; i++)); do
    if curl -fsS -m 1 -o /dev/null "$SERVER_URL/healthz" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      local code=0
      wait "$SERVER_PID" || code=$?
      SERVER_WHY="server exited with code $code: $(server_message "$name")"
      return 1
    fi
    sleep 0.1
  done
  SERVER_WHY="server did not answer GET /healthz within 5 s"
  return 1
}

# The message of the server's last log line.
server_message() {
  tail -n 1 "$work/$1.err" | sed -n 's/.*"message":"\([^"]*\)".*/\1/p'
}

# figures

# KiB of a /proc status field (VmRSS, VmHWM) or the thread count.
proc_field() {
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# hyperfine_medians FILE ARGS...: runs hyperfine without a shell and prints
# the median of each command in seconds, one a line.
hyperfine_medians() {
  local csv=$1
  shift
  hyperfine -N --style none --export-csv "$csv" "$@" >/dev/null 2>"$csv.err" || {
    say "hyperfine failed: $(tail -n 3 "$csv.err")"
    return 1
  }
  # Columns: command,mean,stddev,median,user,system,min,max
  awk -F, 'NR > 1 { print $(NF - 4) }' "$csv"
}

# Largest peak RSS in KiB over COUNT runs of a command (its output dropped).
peak_rss_kib() {
  local count=$1 i kib max=0
  shift
  for ((i = 0; i < count; i++)); do
    /usr/bin/time -f %M -o "$work/time" "$@" >/dev/null 2>&1 || true
    kib=$(tail -n 1 "$work/time")
    ((kib > max)) && max=$kib
  done
  echo "$max"
}

ms() { awk -v s="$1" 'BEGIN { printf "%.2f ms", s * 1000 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.2f MiB", k / 1024 }'; }
# at_most VALUE LIMIT: ok or MISS
at_most() { awk -v v="$1" -v l="$2" 'BEGIN { print (v <= l) ? "ok" : "MISS" }'; }

rows=()
row() { rows+=("| $1 | $2 | $3 | $4 |"); }

measure_size() {
  local bytes kind
  bytes=$(stat -c %s "$BIN")
  kind=$(file -b "$BIN" 2>/dev/null | grep -o 'static[a-z-]*\|stripped\|not stripped' | paste -sd, - | sed 's/,/, /g' || true)
  row "binary size (${kind:-$BUILD})" \
    "$(awk -v b="$bytes" 'BEGIN { printf "%.2f MiB (%d bytes)", b / 1048576, b }')" \
    "≤ 3 MiB" "$(at_most "$bytes" $((3 * MIB)))"
}

measure_help() {
  local median
  median=$(hyperfine_medians "$work/help.csv" --warmup 10 --runs "$HELP_RUNS" \
    "$BIN --help") || { row "\`--help\` median wall" "n/a: hyperfine failed" "≤ 2 ms" "n/a"; return; }
  row "\`--help\` median wall" "$(ms "$median")" "≤ 2 ms" "$(at_most "$median" 0.002)"
}

# curl sends the bytes the binary sends: same body, same headers.
RELOAD_BODY='{"args":{"reload_remote_schemas":true,"reload_sources":true},"type":"reload_metadata"}'

curl_reload_command() {
  local version
  version=$("$BIN" --version | awk '{ print $2 }')
  printf "curl -s -o /dev/null -H 'accept-encoding: gzip' -H 'user-agent: hasura-metadata-reloader/%s' -H 'accept: */*' -H 'content-type: application/json' --data-binary '%s' %s/v1/metadata" \
    "$version" "$RELOAD_BODY" "$1"
}

measure_reload() {
  local url=$1 medians reload curl_median
  if ! "$BIN" reload --hasura-endpoint "$url" 2>"$work/reload.err"; then
    row "\`reload\` wall / \`curl\` wall" "n/a: reload failed: $(tail -n 1 "$work/reload.err")" "≤ 0.5" "n/a"
    return
  fi
  medians=$(hyperfine_medians "$work/reload.csv" --warmup 5 --runs "$RELOAD_RUNS" \
    "$BIN reload --hasura-endpoint $url" "$(curl_reload_command "$url")") || {
    row "\`reload\` wall / \`curl\` wall" "n/a: hyperfine failed" "≤ 0.5" "n/a"
    return
  }
  reload=$(sed -n 1p <<<"$medians")
  curl_median=$(sed -n 2p <<<"$medians")
  local ratio
  ratio=$(awk -v r="$reload" -v c="$curl_median" 'BEGIN { printf "%.2f", r / c }')
  row "\`reload\` median wall / \`curl\` median wall, same request" \
    "$ratio ($(ms "$reload") / $(ms "$curl_median"))" "≤ 0.5" "$(at_most "$ratio" 0.5)"

  local kib
  kib=$(peak_rss_kib "$RSS_RUNS" "$BIN" reload --hasura-endpoint "$url")
  row "\`reload\` peak RSS (max of $RSS_RUNS)" "$(mib "$kib")" "≤ 4 MiB" "$(at_most "$kib" 4096)"
}

# wrk_rps PATH SECONDS: requests per second of wrk -t2 -c8 on the server.
wrk_rps() {
  wrk -t2 -c8 -d"$2"s "$SERVER_URL$1" >"$work/wrk.txt" 2>&1 || return 1
  awk '$1 == "Requests/sec:" { print $2 }' "$work/wrk.txt"
}

measure_server_load() {
  local url=$1 idle after reload_rps health_rps
  if ! start_server server "$url"; then
    row "\`server\` idle RSS" "n/a: $SERVER_WHY" "≤ 3 MiB" "n/a"
    row "\`server\` RSS after ${WRK_SECONDS} s of wrk on each route" "n/a: $SERVER_WHY" "≤ 6 MiB" "n/a"
    row "\`/healthz\` requests per second" "n/a: $SERVER_WHY" "record" "n/a"
    return
  fi
  sleep 1
  idle=$(proc_field "$SERVER_PID" VmRSS)
  row "\`server\` idle RSS after start" "$(mib "$idle")" "≤ 3 MiB" "$(at_most "$idle" 3072)"

  reload_rps=$(wrk_rps /reload_metadata "$WRK_SECONDS") || reload_rps="wrk failed"
  health_rps=$(wrk_rps /healthz "$WRK_SECONDS") || health_rps="wrk failed"
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    row "\`server\` RSS after ${WRK_SECONDS} s of wrk on each route" "n/a: the server died under load" "≤ 6 MiB" "MISS"
    row "\`/healthz\` requests per second" "$health_rps" "record" "–"
    return
  fi
  after=$(proc_field "$SERVER_PID" VmRSS)
  row "\`server\` RSS after ${WRK_SECONDS} s of wrk (2 threads, 8 connections) on \`/reload_metadata\` ($reload_rps req/s), then on \`/healthz\`" \
    "$(mib "$after") (peak $(mib "$(proc_field "$SERVER_PID" VmHWM)"), $(proc_field "$SERVER_PID" Threads) threads)" \
    "≤ 6 MiB" "$(at_most "$after" 6144)"
  row "\`/healthz\` requests per second (same wrk run)" "$health_rps" "record" "–"
}

measure_single_flight() {
  local figure="50 concurrent \`/reload_metadata\`, each reload 1 s: reloads reaching Hasura; slowest answer"
  local budget="≤ 2; ≤ 2.5 s"
  start_fake slow --delay-ms 1000 || { row "$figure" "n/a: the fake did not start" "$budget" "n/a"; return; }
  if ! start_server single "$FAKE_URL"; then
    row "$figure" "n/a: $SERVER_WHY" "$budget" "n/a"
    return
  fi
  local before i curls=()
  before=$(grep -c reload_metadata "$work/slow.log" || true)
  for ((i = 0; i < 50; i++)); do
    curl -s -o /dev/null -m 30 -w '%{time_total} %{http_code}\n' -X POST \
      "$SERVER_URL/reload_metadata" >"$work/c50.$i" &
    curls+=($!)
  done
  wait "${curls[@]}" || true
  sleep 0.2
  local reloads slowest codes
  reloads=$(($(grep -c reload_metadata "$work/slow.log" || true) - before))
  slowest=$(cat "$work"/c50.* | sort -n | tail -n 1 | awk '{ print $1 }')
  codes=$(cat "$work"/c50.* | awk '{ print $2 }' | sort | uniq -c | awk '{ printf "%s%s×%s", sep, $1, $2; sep = ", " }')
  local verdict=ok
  ((reloads <= 2)) || verdict=MISS
  [ "$(at_most "${slowest:-99}" 2.5)" = ok ] || verdict=MISS
  row "$figure" "$reloads; $(awk -v s="$slowest" 'BEGIN { printf "%.2f s", s }') (answers: $codes)" "$budget" "$verdict"
}

measure_big_answer() {
  local figure="\`reload\` with 20,000 inconsistent objects (\`--retries 0\`): wall; peak RSS"
  start_fake big --objects 20000 --inconsistent-reloads always ||
    { row "$figure" "n/a: the fake did not start" "≤ 1 s; ≤ 5 × body" "n/a"; return; }
  local bytes
  bytes=$(curl -s -m 30 -o "$work/big.json" -w '%{size_download}' \
    -H 'content-type: application/json' --data-binary "$RELOAD_BODY" "$FAKE_URL/v1/metadata")
  local code=0
  "$BIN" reload --hasura-endpoint "$FAKE_URL" --retries 0 >/dev/null 2>&1 || code=$?
  if ((code != 1)); then
    row "$figure" "n/a: reload exited $code, not 1" "≤ 1 s; ≤ 5 × body" "MISS"
    return
  fi
  # curl sends the same request, for the fake's own share of the wall.
  local medians median curl_median kib
  medians=$(hyperfine_medians "$work/big.csv" -i --warmup 1 --runs "$BIG_RUNS" \
    "$BIN reload --hasura-endpoint $FAKE_URL --retries 0" "$(curl_reload_command "$FAKE_URL")") ||
    medians=$'99\n99'
  median=$(sed -n 1p <<<"$medians")
  curl_median=$(sed -n 2p <<<"$medians")
  kib=$(peak_rss_kib "$RSS_RUNS" "$BIN" reload --hasura-endpoint "$FAKE_URL" --retries 0)
  local verdict=ok
  [ "$(at_most "$median" 1)" = ok ] || verdict=MISS
  ((kib * 1024 <= 5 * bytes)) || verdict=MISS
  row "$figure" \
    "$(awk -v s="$median" -v c="$curl_median" 'BEGIN { printf "%.3f s (curl, same request: %.3f s)", s, c }'); $(mib "$kib") = $(awk -v k="$kib" -v b="$bytes" 'BEGIN { printf "%.1f", k * 1024 / b }') × the $(mib $((bytes / 1024))) body" \
    "≤ 1 s; ≤ 5 × body" "$verdict"
}

machine() {
  local model memory
  model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
  memory=$(awk '$1 == "MemTotal:" { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  echo "$(nproc) CPUs, ${model:-unknown model}, $memory memory"
}

main() {
  install_missing_tools
  build
  say "measuring $BIN"

  measure_size
  measure_help
  start_fake fast
  local fast=$FAKE_URL
  measure_reload "$fast"
  measure_server_load "$fast"
  measure_single_flight
  measure_big_answer

  local mode=full
  ((QUICK)) && mode="quick (few runs, short loads: not comparable with a full run)"
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(machine)"
  local source
  source=$(git rev-parse --short HEAD 2>/dev/null || echo "an unknown commit")
  [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || source+=" with uncommitted changes"
  echo "Build: $BUILD of $source; mode: $mode"
  echo
  echo "| figure | measured | budget | verdict |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
}

main
