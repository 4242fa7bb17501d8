#!/usr/bin/env bash
# Issuance throughput by storage engine: SQLite, PostgreSQL with one replica, PostgreSQL with two
# replicas behind one issuer — same machine, same run, same load tool (bench/loadgen), same
# requests (client_credentials with a fresh private_key_jwt assertion and DPoP proof each).
#
#   bench/replicas/run.sh                    # from the repository root
#   CARGO_TARGET_DIR=/work/target-bench ROUNDS=3 DURATION=10 bench/replicas/run.sh
#
# PostgreSQL: $PG_URL (default postgres://postgres@127.0.0.1:5432/test); each setup gets a fresh
# schema, dropped at the end. With two replicas, two load tools run at once, one per replica,
# both naming the shared issuer (as behind a load balancer); their tokens/s are added. Rounds
# interleave the three setups so background noise falls on all of them. On a 2-core machine the
# replicas, PostgreSQL and the load tools share the same cores: this measures correctness
# overhead and contention, not scale-out.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
AGENTS=${AGENTS:-32}
C=${CONCURRENCY:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
OUT=${OUT:-$ROOT/bench/replicas/out/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BIN=$CARGO_TARGET_DIR/release
CLK_TCK=$(getconf CLK_TCK)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
SCHEMAS=()
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for s in "${SCHEMAS[@]}"; do psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
wait_http() {
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}
new_schema() { # NAME -> database URL
  psql -q "$PG_URL" -c "CREATE SCHEMA $1" >/dev/null
  SCHEMAS+=("$1")
  echo "$PG_URL?options=-csearch_path%3D$1"
}

echo "== build (release) =="
cargo build --release -p mandate-cli -p mandate-loadgen
LOADGEN=$BIN/mandate-loadgen
ADMIN_KEY="mnd_bench_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
tag=$(date +%s)

start() { # NAME PORT DATA [DB_URL] ; issuer = first replica's URL in $ISSUER
  local db=()
  [ -n "${4:-}" ] && db=(--database-url "$4")
  MANDATE_BOOTSTRAP_KEY=$ADMIN_KEY MANDATE_LOG=warn "$BIN/mandate" serve --listen "127.0.0.1:$2" \
    --data "$3" --issuer "$ISSUER" "${db[@]}" >"$OUT/$1.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$1=$!"
  wait_http "http://127.0.0.1:$2/.well-known/oauth-authorization-server"
}

echo "== SQLite =="
ISSUER=http://127.0.0.1:18680
start sqlite 18680 "$OUT/sqlite-data"
"$LOADGEN" setup-mandate --base "$ISSUER" --admin-key "$ADMIN_KEY" --agents "$AGENTS" --out "$OUT/sqlite.json"

echo "== PostgreSQL, one replica =="
ISSUER=http://127.0.0.1:18681
start pg1 18681 "$OUT/pg1-data" "$(new_schema "bench_pg1_$tag")"
"$LOADGEN" setup-mandate --base "$ISSUER" --admin-key "$ADMIN_KEY" --agents "$AGENTS" --out "$OUT/pg1.json"

echo "== PostgreSQL, two replicas (shared schema, signing keys and issuer) =="
ISSUER=http://127.0.0.1:18682
DB2=$(new_schema "bench_pg2_$tag")
start pg2a 18682 "$OUT/pg2-data" "$DB2"
start pg2b 18683 "$OUT/pg2-data" "$DB2"
"$LOADGEN" setup-mandate --base "$ISSUER" --admin-key "$ADMIN_KEY" --agents "$AGENTS" --out "$OUT/pg2.json"

one() { # LABEL TARGET PID [CONNECT] [CONCURRENCY]
  local connect=()
  [ -n "${4:-}" ] && connect=(--connect "$4")
  "$LOADGEN" run --target "$2" --label "$1" --concurrency "${5:-$C}" --duration "$DURATION" \
    --warmup "$WARMUP" --runs 1 --server-pid "$3" --clk-tck "$CLK_TCK" --out "$RESULTS" "${connect[@]}"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round/$ROUNDS (concurrency $C) =="
  one sqlite "$OUT/sqlite.json" "$PID_sqlite"
  one postgres-1-replica "$OUT/pg1.json" "$PID_pg1"
  # Two replicas: half the connections on each, at the same time.
  one postgres-2-replicas-a "$OUT/pg2.json" "$PID_pg2a" 127.0.0.1:18682 $((C / 2)) &
  A=$!
  one postgres-2-replicas-b "$OUT/pg2.json" "$PID_pg2b" 127.0.0.1:18683 $((C / 2)) &
  B=$!
  wait "$A" "$B"
done

echo "== summary (medians of $ROUNDS rounds; two replicas = sum of both load tools per round) =="
python3 - "$RESULTS" <<'PY' | tee "$OUT/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    assert r["errors"] == 0 or r["ok"] > 0, r
    by.setdefault(r["label"], []).append(r["tokens_per_s"])
two = [a + b for a, b in zip(by.get("postgres-2-replicas-a", []), by.get("postgres-2-replicas-b", []))]
res = {"SQLite (embedded)": statistics.median(by["sqlite"]),
       "PostgreSQL, 1 replica": statistics.median(by["postgres-1-replica"]),
       "PostgreSQL, 2 replicas": statistics.median(two)}
base = res["SQLite (embedded)"]
print("| setup | tokens/s (median) | vs SQLite |")
print("|---|---:|---:|")
for k, v in res.items():
    print(f"| {k} | {v:,.0f} | {v / base:.2f}× |")
PY
