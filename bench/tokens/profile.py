#!/usr/bin/env python3
"""Attributes a `perf record --call-graph dwarf` profile of the Mandate server to thread groups
and activities, in % of server samples and in µs of server CPU per issued token.

    perf script -i perf.data -F tid,comm,ip,sym | bench/tokens/profile.py --us-per-token 1100

Thread groups: the ledger writer (`mandate-ledger-writer`), the async workers and the tokio
blocking pool (both named `tokio-rt-worker`; told apart by their stacks: store reads run in the
blocking pool through spawn_blocking).
Activities: the first rule below that matches any frame of the sample's stack, in rule order.
"""
import argparse
import re
import sys
from collections import Counter, defaultdict

RULES = [
    ("Ed25519 verify", r"ed25519_dalek::verifying|vartime_double_base|RCompute"),
    ("Ed25519 sign", r"ed25519_dalek::signing|SigningKey as signature"),
    ("JWK decode, thumbprint, htu, claims (jose)", r"mandate_core::jwk|mandate_core::jose"),
    ("SQLite: open reader connection", r"open_conn|openDatabase|sqlite3_open|sqlite3InitOne"),
    ("SQLite: close connection", r"sqlite3_close|sqlite3LeaveMutexAndCloseZombie|drop_in_place<rusqlite::Connection>|sqlite3PagerClose"),
    ("SQLite: fsync", r"do_fsync|__x64_sys_fsync|fdatasync|unixSync"),
    ("SQLite: page writes (pwrite)", r"unixWrite|pwrite"),
    ("SQLite: page reads (pread, cold cache)", r"unixRead|pread"),
    ("SQLite: SQL parse / prepare", r"sqlite3Prepare|sqlite3RunParser|sqlite3Reprepare|sqlite3LockAndPrepare|yy_reduce"),
    ("SQLite: execute (B-tree, VDBE)", r"sqlite3|rusqlite"),
    ("receipt seal / hash / Merkle", r"mandate_core::receipt|mandate_core::merkle|mandate_core::jcs|Writer>::append|sqlite::ledger"),
    ("store row decode (JSON columns, ids)", r"mandate_store::sqlite::read"),
    ("JSON (serde_json) in handler", r"serde_json"),
    ("token handler logic (form, scope, claims, errors)", r"mandate_server::routes|mandate_core::scope|form_urlencoded"),
    ("HTTP (hyper, axum, sockets)", r"hyper::|axum::serve|tcp_|sock_|epoll|__sys_sendto|__sys_recvfrom|ksys_write|ksys_read|mio::"),
    ("malloc / free", r"malloc|_int_free|cfree|realloc|unlink_chunk|__libc_free"),
    ("tokio scheduling, futex, wake-ups", r"futex|tokio::runtime|schedule|try_to_wake_up|Condvar|park|pthread"),
]
COMPILED = [(name, re.compile(pat)) for name, pat in RULES]


def parse(stream):
    """Samples of `perf script -F tid,comm,ip,sym`: a `comm tid` line, then indented frames."""
    sample = None
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line[0] in " \t":
            if sample is not None:
                f = line.strip().split(" ", 1)
                sample["frames"].append(f[1] if len(f) > 1 else f[0])
            continue
        if sample:
            yield sample
        parts = line.split()
        tid = int(parts[-1]) if parts and parts[-1].isdigit() else 0
        sample = {"comm": " ".join(parts[:-1]), "tid": tid, "frames": []}
    if sample:
        yield sample


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--us-per-token", type=float, default=0.0,
                    help="measured server CPU per token (µs), to convert shares to µs")
    args = ap.parse_args()

    samples = list(parse(sys.stdin))
    # A tokio runtime names its async workers and its blocking-pool threads alike: classify each
    # thread by what its samples show.
    evidence = defaultdict(Counter)
    for s in samples:
        stack = "\n".join(s["frames"])
        # Runtime workers are themselves started through the blocking pool's spawner, so only a
        # `BlockingTask` frame marks a spawn_blocking job.
        if "BlockingTask" in stack or "mandate_store::sqlite::read" in stack:
            evidence[s["tid"]]["blocking"] += 1
        elif "multi_thread::worker" in stack or "hyper::" in stack or "mandate_server::routes" in stack:
            evidence[s["tid"]]["async"] += 1
    workers = {t for t, c in evidence.items() if c["async"] > c["blocking"]}

    def group(s):
        if s["comm"].startswith("mandate-ledger"):
            return "writer"
        if s["comm"].startswith("tokio-rt-worker"):
            return "async" if s["tid"] in workers else "blocking"
        return "other"

    table = defaultdict(Counter)
    totals = Counter()
    for s in samples:
        stack = "\n".join(s["frames"])
        act = "other"
        for name, rx in COMPILED:
            if rx.search(stack):
                act = name
                break
        g = group(s)
        table[act][g] += 1
        totals[g] += 1
    n = max(1, len(samples))
    groups = ["async", "blocking", "writer", "other"]
    names = {"async": "async workers", "blocking": "blocking pool (reads)",
             "writer": "ledger writer", "other": "other threads"}
    us = args.us_per_token

    def cell(count):
        share = 100.0 * count / n
        return f"{share:.1f} %" + (f" · {us * count / n:.0f} µs" if us else "")

    print(f"{len(samples)} samples; server CPU per token {us:.0f} µs" if us else f"{len(samples)} samples")
    print()
    print("| activity | " + " | ".join(names[g] for g in groups) + " | total |")
    print("|---|" + "---|" * (len(groups) + 1))
    order = sorted(table, key=lambda a: -sum(table[a].values()))
    for act in order:
        row = table[act]
        print(f"| {act} | " + " | ".join(cell(row[g]) for g in groups) + f" | **{cell(sum(row.values()))}** |")
    print("| **total** | " + " | ".join(cell(totals[g]) for g in groups) + f" | {cell(n)} |")


if __name__ == "__main__":
    main()
