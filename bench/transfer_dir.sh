#!/usr/bin/env bash
# Bench 3 and 5: `airlift transfer` to a directory vs `rsync -a`, and `airlift verify` vs
# `sha256sum -c SHA256SUMS`, on the same bundle (built by bench/build_local.sh first if missing).
# Usage: bench/transfer_dir.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
ROOT=${BENCH_DIR:-/tmp/airlift-bench}
BUNDLE=$ROOT/build/bundle
AIRLIFT=$PWD/.venv/bin/airlift
export PREFECT_SERVER_ANALYTICS_ENABLED=false AIRLIFT_CACHE=$ROOT/build/cache
[ -f "$BUNDLE/manifest.json" ] || bench/build_local.sh "$SIZE_MIB" > /dev/null
rm -rf "$ROOT/rsync-dest" "$ROOT/airlift-dest" "$BUNDLE/receipts"
now() { date +%s.%N; }
sync; t0=$(now); rsync -a "$BUNDLE/" "$ROOT/rsync-dest/"; sync; t1=$(now)
"$AIRLIFT" transfer "$BUNDLE" --to "$ROOT/airlift-dest" > /dev/null; sync; t2=$(now)
(cd "$BUNDLE" && sha256sum --quiet -c SHA256SUMS); t3=$(now)
"$AIRLIFT" verify "$BUNDLE" --receipt "$ROOT/receipts" > /dev/null; t4=$(now)
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" "$(du -sb "$BUNDLE/blobs" | cut -f1)" "${PREFECT_API_URL:-ephemeral}" <<'PY'
import sys
t0, t1, t2, t3, t4 = map(float, sys.argv[1:6]); size = int(sys.argv[6]); mode = sys.argv[7]
rsync, xfer, sums, verify = t1 - t0, t2 - t1, t3 - t2, t4 - t3
print(f"| measure ({size / 2**20:.0f} MiB bundle, Prefect: {mode}) | seconds | ratio |")
print("|---|---|---|")
print(f"| rsync -a (baseline) | {rsync:.2f} | 1.00 |")
print(f"| airlift transfer (copy + hash + verify at DEST) | {xfer:.2f} | {rsync / xfer:.2f}x rsync speed (target >= 0.9) |")
print(f"| sha256sum -c SHA256SUMS (baseline) | {sums:.2f} | 1.00 |")
print(f"| airlift verify (+ receipt) | {verify:.2f} | {sums / verify:.2f}x faster (target >= 1.5) |")
PY
