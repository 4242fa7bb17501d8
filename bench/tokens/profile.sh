#!/usr/bin/env bash
# Where Mandate's server CPU goes per issued token: starts the release binary on a fresh data
# directory, loads it with the token benchmark's load tool at CONCURRENCY, records a
# `perf record --call-graph dwarf` profile of the server during the window, and attributes the
# samples to thread groups and activities (bench/tokens/profile.py). Also counts the server's
# syscalls (fsync, pwrite, pread, openat, futex) per token with perf tracepoints.
#
#   CARGO_TARGET_DIR=/work/target-bench bench/tokens/profile.sh
#
# Needs `perf` with permission to profile the process (root, or perf_event_paranoid ≤ 1).
# Run bench/tokens/run.sh first (or `cargo build --release -p mandate-cli -p mandate-loadgen`).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
CONCURRENCY=${CONCURRENCY:-16}
AGENTS=${AGENTS:-64}
PORT=${PORT:-18482}
OUT=${OUT:-$ROOT/bench/tokens/out/profile-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

PID=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$OUT/mandate-data"
}
trap cleanup EXIT

ADMIN_KEY="mnd_profile_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
MANDATE_BOOTSTRAP_KEY=$ADMIN_KEY "$BIN/mandate" serve --listen "127.0.0.1:$PORT" \
  --data "$OUT/mandate-data" --issuer "http://127.0.0.1:$PORT" >"$OUT/mandate.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/.well-known/oauth-authorization-server" 2>/dev/null && break
  sleep 0.1
done
"$BIN/mandate-loadgen" setup-mandate --base "http://127.0.0.1:$PORT" --admin-key "$ADMIN_KEY" \
  --agents "$AGENTS" --out "$OUT/target.json"

load() { # DURATION LABEL
  "$BIN/mandate-loadgen" run --target "$OUT/target.json" --label "$2" --concurrency "$CONCURRENCY" \
    --duration "$1" --warmup 2 --runs 1 --server-pid "$PID" --clk-tck "$(getconf CLK_TCK)" \
    --out "$OUT/results.jsonl"
}

echo "== syscalls per token (perf tracepoints, 5 s inside a 12 s window) =="
load 12 syscalls 2>"$OUT/syscalls-load.txt" &
LOAD=$!
sleep 6
perf stat -x, -o "$OUT/syscalls.csv" \
  -e 'syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64,syscalls:sys_enter_pread64,syscalls:sys_enter_openat,syscalls:sys_enter_futex,context-switches' \
  -p "$PID" -- sleep 5
wait "$LOAD"
cat "$OUT/syscalls-load.txt"
RATE=$(tail -1 "$OUT/results.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])')
python3 - "$OUT/syscalls.csv" "$RATE" <<'EOF'
import sys
path, rate = sys.argv[1], float(sys.argv[2])
tokens = rate * 5
for line in open(path):
    parts = line.strip().split(",")
    if len(parts) < 3 or not parts[0].replace(".", "").isdigit():
        continue
    print(f"{parts[2]:<40} {float(parts[0]) / tokens:8.2f} per token")
EOF

echo "== CPU profile (perf record --call-graph dwarf, 5 s inside a 12 s window) =="
load 12 perf 2>"$OUT/perf-load.txt" &
LOAD=$!
sleep 6
perf record -F 499 --call-graph dwarf,32768 -p "$PID" -o "$OUT/perf.data" -- sleep 5 2>/dev/null
wait "$LOAD"
cat "$OUT/perf-load.txt"
US=$(tail -1 "$OUT/results.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(1e6/r["tokens_per_server_cpu_s"])')
perf script -i "$OUT/perf.data" -F tid,comm,ip,sym 2>/dev/null |
  python3 bench/tokens/profile.py --us-per-token "$US" | tee "$OUT/profile.md"
echo "profile: $OUT"
