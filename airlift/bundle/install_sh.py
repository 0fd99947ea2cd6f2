"""`BUNDLE/install.sh`: installs the airlift a bundle carries (`tools/airlift`), offline, checked first.

The script is the same text for every bundle an airlift version writes: no manifest field is ever
rendered into it, so nothing in a (hostile) manifest can become a shell word. It travels as a file of
`tools/airlift` (so the signed manifest pins it: compare `sha256sum install.sh` with the manifest
before running it, if the medium itself is not trusted), and BUNDLE/install.sh is derived from that blob
like index.json is derived from the image blobs (airlift/bundle/layout.py).

What it runs: a POSIX shell, coreutils (head, base64, mktemp), openssl (only with --pubkey) and the
target Python. Everything read from the manifest is handled by a fixed Python program (on stdin, `-I`:
no environment, no user site) that validates each name and digest, then hashes every blob while it
copies it under its wheel name into a private temporary directory. Only when the signature and every
blob check out is DIR created: `python -m venv DIR`, then pip with `--no-index --isolated` from those
verified copies. No step reaches the network.
"""

from __future__ import annotations

from airlift import __version__

INSTALL_SH = "install.sh"  # the derived top-level file
INSTALL_SH_PATH = "install.sh"  # its path inside the artifact tools/airlift

_VERIFY_PY = r'''
import hashlib, json, os, re, stat, sys
bundle, stage = sys.argv[1], sys.argv[2]
MAX_MANIFEST = 256 << 20
WHEEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*\.whl$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
PY = re.compile(r"^3\.[0-9]+$")
def fail(message):
    print("install.sh: refused: " + message, file=sys.stderr)
    sys.exit(1)
with open(os.path.join(stage, "manifest.json"), "rb") as handle:
    data = handle.read(MAX_MANIFEST + 1)
if len(data) > MAX_MANIFEST:
    fail("manifest.json is larger than %d bytes" % MAX_MANIFEST)
try:
    manifest = json.loads(data)
except (ValueError, UnicodeDecodeError, RecursionError):
    fail("manifest.json is not valid JSON")
if not isinstance(manifest, dict) or manifest.get("schema_version") != 1:
    fail("manifest.json: schema_version is not 1 (this install.sh reads schema_version 1)")
artifacts = manifest.get("artifacts")
tools = [a for a in artifacts if isinstance(a, dict) and a.get("id") == "tools/airlift"] if isinstance(artifacts, list) else []
if len(tools) != 1 or not isinstance(tools[0].get("source"), dict) or not isinstance(tools[0].get("files"), list):
    fail("manifest.json carries no installer (tools/airlift); build the bundle with installer: or --installer")
source, files = tools[0]["source"], tools[0]["files"]
want = source.get("python")
have = "%d.%d" % sys.version_info[:2]
if not isinstance(want, str) or not PY.match(want):
    fail("manifest.json: tools/airlift: source.python is not a Python version")
if want != have:
    fail("the installer holds wheels for Python %s, but %s is Python %s: pass --python with a Python %s, "
         "or build the bundle with installer: {python: '%s'}" % (want, sys.executable, have, want, have))
os.mkdir(os.path.join(stage, "wheels"), 0o700)
count = total = 0
for entry in files:
    if not isinstance(entry, dict):
        fail("manifest.json: tools/airlift: a file entry is not an object")
    name, digest, size = entry.get("path"), entry.get("sha256"), entry.get("size")
    if name == "install.sh":
        continue
    if not isinstance(name, str) or not WHEEL.match(name):
        fail("manifest.json: tools/airlift: %r is not a wheel file name" % (name,))
    if not isinstance(digest, str) or not HEX64.match(digest) or type(size) is not int or size < 0:
        fail("manifest.json: tools/airlift: %s: bad sha256 or size" % name)
    try:
        fd = os.open(os.path.join(bundle, "blobs", "sha256", digest), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        fail("%s: blob %s missing or unreadable (%s)" % (name, digest, exc.strerror))
    with os.fdopen(fd, "rb") as blob:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            fail("%s: blob %s is not a regular file" % (name, digest))
        hasher, seen = hashlib.sha256(), 0
        out = os.open(os.path.join(stage, "wheels", name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(out, "wb") as copy:
            while seen <= size:
                chunk = blob.read(1 << 20)
                if not chunk:
                    break
                seen += len(chunk)
                hasher.update(chunk)
                copy.write(chunk)
    if seen != size or hasher.hexdigest() != digest:
        fail("%s: blob does not match its sha256 in manifest.json (tampered or corrupt)" % name)
    count, total = count + 1, total + size
if not any(n.startswith("airlift-") for n in os.listdir(os.path.join(stage, "wheels"))):
    fail("manifest.json: tools/airlift holds no airlift wheel")
print("install.sh: %d wheels (%d bytes) match manifest.json" % (count, total))
'''

_SCRIPT = r'''#!/bin/sh
# Install the airlift this bundle carries (tools/airlift), offline. Written by airlift @VERSION@.
# usage: sh install.sh --prefix DIR [--pubkey KEY.pub] [--python PYTHON]
# Checks the signature (--pubkey) and every installer blob BEFORE it creates anything; then
# `PYTHON -m venv DIR` and pip --no-index from the checked copies. Makes DIR/bin/airlift.
set -eu
umask 022
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
usage() { printf 'usage: sh install.sh --prefix DIR [--pubkey KEY.pub] [--python PYTHON]\n' >&2; exit 2; }
prefix='' pubkey='' python='python3'
while [ "$#" -gt 0 ]; do
  case "$1" in
    --prefix) [ "$#" -ge 2 ] || usage; prefix="$2"; shift 2 ;;
    --pubkey) [ "$#" -ge 2 ] || usage; pubkey="$2"; shift 2 ;;
    --python) [ "$#" -ge 2 ] || usage; python="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) printf 'install.sh: unknown argument\n' >&2; usage ;;
  esac
done
[ -n "$prefix" ] || usage
case "$prefix" in /*) ;; *) prefix="$(pwd -P)/$prefix" ;; esac
# pip writes DIR into the sh launcher of bin/airlift inside double quotes: these would be expanded there.
case "$prefix" in *'$'*|*'`'*|*'"'*|*'\'*) printf 'install.sh: --prefix must not contain $ ` " or \\\n' >&2; exit 2 ;; esac
bundle="$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)"
[ -f "$bundle/manifest.json" ] || die "no manifest.json beside install.sh (run it from inside the bundle)"
if [ -e "$prefix" ] && [ -n "$(ls -A -- "$prefix")" ]; then die "--prefix $prefix exists and is not empty"; fi
command -v "$python" >/dev/null 2>&1 || die "no Python '$python' (pass --python PATH)"
stage="$(mktemp -d "${TMPDIR:-/tmp}/airlift-install.XXXXXXXX")"
created=''
cleanup() { rm -rf -- "$stage"; if [ -n "$created" ]; then rm -rf -- "$prefix"; fi; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
# Copies (bounded: the bundle may be hostile), so nothing can change them between check and use.
head -c 268435457 -- "$bundle/manifest.json" > "$stage/manifest.json"
if [ -n "$pubkey" ]; then
  [ -f "$pubkey" ] || die "--pubkey $pubkey: no such file"
  [ -f "$bundle/manifest.json.sig" ] || die "refused: the bundle is not signed (no manifest.json.sig)"
  command -v openssl >/dev/null 2>&1 || die "--pubkey needs openssl"
  head -c 4096 -- "$bundle/manifest.json.sig" > "$stage/sig.txt"
  [ "$(wc -l < "$stage/sig.txt")" -le 2 ] || die "refused: manifest.json.sig has more than two lines"
  sed -n 1p "$stage/sig.txt" > "$stage/sig.b64"
  expires="$(sed -n 2p "$stage/sig.txt")"
  base64 -d < "$stage/sig.b64" > "$stage/sig" 2>/dev/null || die "refused: manifest.json.sig is not base64"
  if [ -n "$expires" ]; then
    # `airlift sign --expires`: the signature covers the expiry too (airlift/bundle/signing.py signed_message).
    case "$expires" in
      'expires '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z) expires="${expires#expires }" ;;
      *) die "refused: the second line of manifest.json.sig is not 'expires YYYY-MM-DDTHH:MM:SSZ'" ;;
    esac
    { printf 'airlift-signature-v2\nexpires %s\n' "$expires"; cat -- "$stage/manifest.json"; } > "$stage/message"
  else
    cp -- "$stage/manifest.json" "$stage/message"
  fi
  openssl pkeyutl -verify -pubin -inkey "$pubkey" -rawin -in "$stage/message" -sigfile "$stage/sig" >/dev/null 2>&1 \
    || die "refused: manifest.json does not match its signature under $pubkey (tampered, or signed by another key)"
  if [ -n "$expires" ]; then
    now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    # Fixed-width UTC times order as strings; the x keeps expr from reading them as numbers.
    [ "$(expr "x$now" \< "x$expires")" = 1 ] || die "refused: the signature expired at $expires (re-sign the bundle: airlift sign --expires)"
  fi
  printf 'install.sh: signature valid under %s\n' "$pubkey"
else
  printf 'install.sh: no --pubkey: the signature is NOT checked, only the blobs against manifest.json\n' >&2
fi
"$python" -I - "$bundle" "$stage" <<'VERIFY_PY'
@VERIFY@
VERIFY_PY
# Everything checked: only now is DIR made.
created=1
# -I and a directory of our own: `-m` would otherwise import a planted venv.py or pip.py from the
# working directory (the bundle, usually), which no signature covers.
cd -- "$stage" || die "cannot enter $stage"
"$python" -I -m venv -- "$prefix" || die "$python -m venv $prefix failed"
PIP_CONFIG_FILE=/dev/null "$prefix/bin/python" -I -m pip install --isolated --no-index --no-cache-dir --disable-pip-version-check \
  --quiet --only-binary ':all:' --find-links "$stage/wheels" airlift || die "pip could not install from the verified wheels"
"$prefix/bin/airlift" --version >/dev/null || die "the installed $prefix/bin/airlift does not run"
created=''
printf 'install.sh: installed %s at %s/bin/airlift\n' "$("$prefix/bin/airlift" --version)" "$prefix"
'''


def render_install_sh() -> bytes:
    """install.sh's bytes: fixed text (and this airlift's version), nothing from any manifest."""
    return _SCRIPT.replace("@VERSION@", __version__).replace("@VERIFY@", _VERIFY_PY.strip()).encode()
