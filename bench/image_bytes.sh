#!/usr/bin/env bash
# Image bytes: a registry image plus an engine image built FROM it (`from: docker`), as a bundle vs
# `docker save` of the same two images. The engine image's base layers are shared with the registry
# image by content (diff_id map) and its own layer is stored gzip-compressed. Needs `make services`.
# Usage: bench/image_bytes.sh [BASE_MIB] [OWN_MIB]   (payloads are hex text: compressible, like code/data)
set -euo pipefail
cd "$(dirname "$0")/.."
source "${AIRLIFT_SERVICES_DIR:-/tmp/airlift-services}/env"
BASE_MIB=${1:-64}
OWN_MIB=${2:-8}
WORK=${BENCH_DIR:-/tmp/airlift-bench}/image-bytes
AIRLIFT=$PWD/.venv/bin/airlift
export DOCKER_HOST=$AIRLIFT_DOCKER_HOST DOCKER_BUILDKIT=0 AIRLIFT_CACHE=$WORK/cache PREFECT_SERVER_ANALYTICS_ENABLED=false
rm -rf "$WORK"; mkdir -p "$WORK/base" "$WORK/engine"
.venv/bin/python -c "from airlift.testing.images import busybox_image; busybox_image('$DOCKER_HOST')"
hex() { head -c "$(($1 << 19))" /dev/urandom | od -An -v -tx1 | tr -d ' \n' | head -c "$(($1 << 20))"; }
hex "$BASE_MIB" > "$WORK/base/payload.txt"
hex "$OWN_MIB" > "$WORK/engine/own.txt"
tag=$RANDOM
reg=$AIRLIFT_UPSTREAM_REGISTRY/airlift-bench/base:$tag
eng=airlift-bench/engine:$tag
printf 'FROM airlift-test/busybox:base\nCOPY payload.txt /payload.txt\n' > "$WORK/base/Dockerfile"
docker build -q -t "$reg" "$WORK/base" > /dev/null && docker push -q "$reg" > /dev/null
printf 'FROM %s\nCOPY own.txt /own.txt\n' "$reg" > "$WORK/engine/Dockerfile"
docker build -q -t "$eng" "$WORK/engine" > /dev/null
printf 'name: bench-image-bytes\nimages:\n  - %s\n  - ref: %s\n    from: docker\n' "$reg" "$eng" > "$WORK/spec.yaml"
now() { date +%s.%N; }
t0=$(now); "$AIRLIFT" build "$WORK/spec.yaml" --out "$WORK/bundle" > /dev/null; t1=$(now)
"$AIRLIFT" build "$WORK/spec.yaml" --out "$WORK/again" > /dev/null; t2=$(now)
docker save "$reg" "$eng" -o "$WORK/both.tar"
docker save "$reg" -o "$WORK/reg.tar"; docker save "$eng" -o "$WORK/eng.tar"
bundle=$(du -sb "$WORK/bundle/blobs" | cut -f1)
both=$(stat -c %s "$WORK/both.tar"); apart=$(( $(stat -c %s "$WORK/reg.tar") + $(stat -c %s "$WORK/eng.tar") ))
skopeo inspect "oci:$WORK/bundle:$eng" > /dev/null && oci=ok || oci=FAILED
# Before content dedup, the engine image was stored as `docker save` wrote it, beside the registry image.
reg_blobs=$(.venv/bin/python -c "
import json, sys, pathlib
b = pathlib.Path(sys.argv[1]); m = json.loads((b / 'manifest.json').read_text())
a = next(a for a in m['artifacts'] if a['image']['ref'] == sys.argv[2])
print(sum((b / 'blobs/sha256' / d.removeprefix('sha256:')).stat().st_size for d in set(a['blobs'])))" "$WORK/bundle" "$reg")
before=$(( reg_blobs + $(stat -c %s "$WORK/eng.tar") ))
python3 - "$BASE_MIB" "$OWN_MIB" "$bundle" "$both" "$apart" "$before" "$t0" "$t1" "$t2" "$oci" <<'PY'
import sys
base, own, bundle, both, apart, before = map(int, sys.argv[1:7]); t0, t1, t2 = map(float, sys.argv[7:10])
mib = lambda n: f"{n / 2**20:.1f} MiB"
print(f"| measure (base {base} MiB + engine layer {own} MiB, hex text) | value | vs docker save of both |")
print("|---|---|---|")
print(f"| docker save REG ENG (one tar, layers once) | {mib(both)} | 1.00 |")
print(f"| docker save REG + docker save ENG (two tars) | {mib(apart)} | {apart / both:.2f} |")
print(f"| airlift before dedup (registry blobs + engine image as saved) | {mib(before)} | {before / both:.2f} |")
print(f"| airlift bundle blobs (both images) | {mib(bundle)} | {bundle / both:.2f} |")
print(f"| airlift build, first (pull + save + gzip) | {t1 - t0:.2f} s | |")
print(f"| airlift build, rebuild (nothing read from the engine) | {t2 - t1:.2f} s | |")
print(f"| skopeo inspect oci:BUNDLE:ENG | {sys.argv[10]} | |")
PY
