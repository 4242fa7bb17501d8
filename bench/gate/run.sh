#!/usr/bin/env bash
# Gate latency benchmark: the release `mandate gate` in front of a trivial upstream, against
# calling that upstream directly, same machine, same run, same load tool.
#
#   bench/gate/run.sh                        # from the repository root
#   CARGO_TARGET_DIR=/work/target-bench ROUNDS=5 REQUESTS=20000 bench/gate/run.sh
#
# Steps: build the release binaries; start `mandate serve` (fresh data dir) and the upstream;
# set up with the CLI a gate, an agent and a mandate, and redeem a DPoP-bound token; start
# `mandate gate --config`; then ROUNDS rounds, each a window straight to the upstream and a
# window through the gate (interleaved, so background noise falls on both), at CONCURRENCY
# keep-alive connections. Every gated request carries a fresh pre-signed DPoP proof; the token
# is the same (the gate verifies its signature once and caches it — see the verifier bench for
# uncached cost). Each gated request is decided, written to the gate's durable spool (fsync,
# group-committed) and only then forwarded. Prints medians of p50/p99 and the added latency.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-20000}
CONCURRENCY=${CONCURRENCY:-32}
AUTH_PORT=${AUTH_PORT:-18580}
UP_PORT=${UP_PORT:-18581}
GATE_PORT=${GATE_PORT:-18582}
OUT=${OUT:-$ROOT/bench/gate/out/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BIN=$CARGO_TARGET_DIR/release
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
wait_port() {
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for port $1" >&2
  return 1
}

echo "== build (release) =="
cargo build --release -p mandate-cli -p mandate-gatebench
M=$BIN/mandate
G=$BIN/mandate-gatebench

echo "== start the authority and the upstream =="
ADMIN_KEY="mnd_bench_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
MANDATE_BOOTSTRAP_KEY=$ADMIN_KEY MANDATE_LOG=warn "$M" serve --listen "127.0.0.1:$AUTH_PORT" --data "$OUT/authority" >"$OUT/authority.log" 2>&1 &
PIDS+=($!)
"$G" upstream "$UP_PORT" &
PIDS+=($!)
wait_port "$AUTH_PORT"
wait_port "$UP_PORT"
export MANDATE_SERVER="http://127.0.0.1:$AUTH_PORT" MANDATE_API_KEY=$ADMIN_KEY

echo "== set up: gate, agent, mandate, token =="
AUD="http://127.0.0.1:$GATE_PORT"
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
"$G" keygen "$OUT/gate-key.json" "$OUT/gate-pub.json"
GATE=$("$M" --json gate add --name bench-gate --audience "$AUD" --jwk "@$OUT/gate-pub.json" | field '["id"]')
OWNER=$("$M" --json whoami | field '["human"]["id"]')
SCOPE="{\"type\":\"mandate\",\"actions\":[\"read\"],\"locations\":[\"$AUD\"],\"resources\":[\"tickets/*\"]}"
AGENT=$("$M" --json agent add --name bench-agent --owner "$OWNER" --purpose "benchmark" --ceiling "$SCOPE" \
  --save-key "$OUT/agent.jwk" | field '["agent"]["id"]')
"$M" --json mandate add --agent "$AGENT" --authorization-details "$SCOPE" --purpose "benchmark" \
  --save-document "$OUT/mandate.jwt" >/dev/null
"$M" token redeem --key "$OUT/agent.jwk" --document "$OUT/mandate.jwt" --save "$OUT/token.json" >/dev/null
cat >"$OUT/gate.toml" <<TOML
listen = "127.0.0.1:$GATE_PORT"
issuer = "http://127.0.0.1:$AUTH_PORT"
audience = "$AUD"
gate_id = "$GATE"
key_file = "gate-key.json"
spool_dir = "spool"

[[upstream]]
name = "tickets"
kind = "http"
url = "http://127.0.0.1:$UP_PORT"

[[route]]
method = "GET"
path = "/tickets/{id}"
action = "read"
resource = "tickets/{id}"
TOML
MANDATE_LOG=warn "$M" gate --config "$OUT/gate.toml" >"$OUT/gate.log" 2>&1 &
PIDS+=($!)
wait_port "$GATE_PORT"

echo "== warm-up =="
"$G" run --url "http://127.0.0.1:$UP_PORT" --concurrency "$CONCURRENCY" --requests 2000 --label warm --out /dev/null
"$G" run --url "$AUD" --token "$OUT/token.json" --concurrency "$CONCURRENCY" --requests 2000 --label warm --out /dev/null

for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r/$ROUNDS =="
  "$G" run --url "http://127.0.0.1:$UP_PORT" --concurrency "$CONCURRENCY" --requests "$REQUESTS" --label direct --out "$RESULTS"
  "$G" run --url "$AUD" --token "$OUT/token.json" --concurrency "$CONCURRENCY" --requests "$REQUESTS" --label gate --out "$RESULTS"
done

echo "== summary (concurrency $CONCURRENCY, $REQUESTS requests per window, medians over $ROUNDS rounds) =="
"$G" summary "$RESULTS" | tee "$OUT/summary.md"
