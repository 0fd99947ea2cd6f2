#!/usr/bin/env bash
# Bench 4 and 6: an image bundle vs `docker save` (bytes and time), and peak RSS of airlift while it
# pulls and pushes one 500 MB layer (constant memory is the point). Needs `make services`.
# Usage: bench/image_rss.sh [LAYER_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
source "${AIRLIFT_SERVICES_DIR:-/tmp/airlift-services}/env"
LAYER_MIB=${1:-500}
WORK=${BENCH_DIR:-/tmp/airlift-bench}/image
AIRLIFT=$PWD/.venv/bin/airlift
export DOCKER_HOST=$AIRLIFT_DOCKER_HOST DOCKER_BUILDKIT=0 AIRLIFT_CACHE=$WORK/cache PREFECT_SERVER_ANALYTICS_ENABLED=false
rm -rf "$WORK"; mkdir -p "$WORK/ctx"
.venv/bin/python -c "from airlift.testing.images import busybox_image; busybox_image('$DOCKER_HOST')"
head -c "$((LAYER_MIB << 20))" /dev/urandom > "$WORK/ctx/big.bin"
printf 'FROM airlift-test/busybox:base\nCOPY big.bin /big.bin\n' > "$WORK/ctx/Dockerfile"
ref=$AIRLIFT_UPSTREAM_REGISTRY/airlift-bench/big:$LAYER_MIB
docker build -q -t "$ref" "$WORK/ctx" > /dev/null && docker push -q "$ref" > /dev/null
printf 'name: bench-image\nimages:\n  - %s\n' "$ref" > "$WORK/spec.yaml"
printf 'registry: {url: %s/bench-%s, insecure: true}\n' "$AIRLIFT_AIRGAP_REGISTRY" "$RANDOM" > "$WORK/site.yaml"
now() { date +%s.%N; }
t0=$(now); docker save "$ref" -o "$WORK/saved.tar"; t1=$(now)
.venv/bin/python bench/peak_rss.py "$WORK/rss.build" "$AIRLIFT" build "$WORK/spec.yaml" --out "$WORK/bundle" > /dev/null; t2=$(now)
.venv/bin/python bench/peak_rss.py "$WORK/rss.ingest" "$AIRLIFT" ingest "$WORK/bundle" --site "$WORK/site.yaml" > /dev/null; t3=$(now)
saved=$(stat -c %s "$WORK/saved.tar"); bundle=$(du -sb "$WORK/bundle/blobs" | cut -f1)
python3 - "$t0" "$t1" "$t2" "$t3" "$saved" "$bundle" "$(cat "$WORK/rss.build")" "$(cat "$WORK/rss.ingest")" "$LAYER_MIB" <<'PY'
import sys
t0, t1, t2, t3 = map(float, sys.argv[1:5]); saved, bundle, rss_b, rss_i, mib = map(int, sys.argv[5:10])
print(f"| measure ({mib} MiB layer) | value | vs baseline |")
print("|---|---|---|")
print(f"| docker save (baseline) | {t1 - t0:.2f} s, {saved / 2**20:.1f} MiB | 1.00 |")
print(f"| airlift build (pull from registry) | {t2 - t1:.2f} s, {bundle / 2**20:.1f} MiB | {bundle / saved:.2f} of the bytes |")
print(f"| peak RSS, build (pull {mib} MiB layer) | {rss_b / 1024:.0f} MiB | target <= 300 MiB |")
print(f"| peak RSS, ingest (push {mib} MiB layer) | {rss_i / 1024:.0f} MiB | target <= 300 MiB |")
PY
