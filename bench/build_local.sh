#!/usr/bin/env bash
# Bench 1-2: build of a local dataset (default 1 GiB) vs the by-hand baseline, in one run.
#   baseline A: tar czf + sha256sum           (what users do today)
#   baseline B: one-pass copy + sha256 (tee)  (the limit for any tool that copies and hashes)
#   airlift build, cold cache, Prefect start-up included; then a no-op rebuild.
# Usage: bench/build_local.sh [SIZE_MIB] ; prints a table of seconds and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
FILES=${FILES:-64}
WORK=${BENCH_DIR:-/tmp/airlift-bench}/build
AIRLIFT=$PWD/.venv/bin/airlift
rm -rf "$WORK"; mkdir -p "$WORK/data"
per=$(( SIZE_MIB / FILES ))
for i in $(seq -w 1 "$FILES"); do head -c "$((per << 20))" /dev/urandom > "$WORK/data/shard-$i.bin"; done
sync
cat > "$WORK/spec.yaml" <<SPEC
name: bench
datasets:
  - path: $WORK/data
SPEC
now() { date +%s.%N; }
t0=$(now); tar czf "$WORK/data.tgz" -C "$WORK" data && sha256sum "$WORK/data.tgz" > /dev/null; t1=$(now)
mkdir -p "$WORK/copy"
for f in "$WORK"/data/*; do tee "$WORK/copy/$(basename "$f")" < "$f" | sha256sum > /dev/null; done; sync; t2=$(now)
export AIRLIFT_CACHE=$WORK/cache PREFECT_SERVER_ANALYTICS_ENABLED=false
t3=$(now); .venv/bin/python bench/peak_rss.py "$WORK/rss.build" "$AIRLIFT" build "$WORK/spec.yaml" --out "$WORK/bundle"; t4=$(now)
"$AIRLIFT" build "$WORK/spec.yaml" --out "$WORK/bundle" > /dev/null; t5=$(now)
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$SIZE_MIB" "${PREFECT_API_URL:-ephemeral}" "$(cat "$WORK/rss.build")" <<'PY'
import sys
t0, t1, t2, t3, t4, t5 = map(float, sys.argv[1:7]); size, mode, rss = sys.argv[7], sys.argv[8], int(sys.argv[9])
tar, copy, build, noop = t1 - t0, t2 - t1, t4 - t3, t5 - t4
print(f"| measure ({size} MiB, Prefect: {mode}) | seconds | ratio |")
print("|---|---|---|")
print(f"| tar czf + sha256sum (baseline) | {tar:.2f} | 1.00 |")
print(f"| one-pass copy + sha256 (limit) | {copy:.2f} | {tar / copy:.2f}x faster than baseline |")
print(f"| airlift build (cold cache) | {build:.2f} | {tar / build:.2f}x faster than baseline; {copy / build:.2f} of the limit |")
print(f"| airlift build (no-op rebuild) | {noop:.2f} | target <= 3 s |")
print(f"| peak RSS of airlift build | {rss / 1024:.0f} MiB | target <= 300 MiB |")
PY
