#!/usr/bin/env bash
# Push and pull of a large image (~SIZE_MB MB in LAYERS layers of incompressible data, plain tar
# layers) against a local registry (Debian's docker-registry on 127.0.0.1, started here with a
# temp root): kiln and `skopeo copy` side by side in one run, RUNS runs each, median seconds and
# the kiln/skopeo ratio. Then a kiln push where every blob is already in the registry (median of
# RUNS, milliseconds; target ≤ 100 ms).
#
#   benches/push-pull-vs-skopeo.sh
#
# push:  kiln `push IMAGE DEST` from its store vs `skopeo copy oci:LAYOUT docker://DEST`, each
#        run against a new, empty registry (nothing to skip or mount).
# pull:  kiln `pull` into an empty store vs `skopeo copy docker://SRC oci:NEW_LAYOUT`.
# Env: RUNS (3), SIZE_MB (500), LAYERS (5), KILN (default target/release/kiln, built with
# `cargo build --release` when missing), WORK (a temp dir under /var/tmp). Not run in CI.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-500}
LAYERS=${LAYERS:-5}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
KILN=${KILN:-$TARGET/release/kiln}
if [ ! -x "$KILN" ]; then (cd "$REPO" && cargo build --release -p kiln --bin kiln); fi
command -v skopeo >/dev/null || { echo "skopeo not installed" >&2; exit 2; }
REGISTRY_BIN=$(command -v docker-registry || echo /usr/bin/docker-registry)
[ -x "$REGISTRY_BIN" ] || { echo "docker-registry not installed" >&2; exit 2; }

WORK=${WORK:-$(mktemp -d /var/tmp/kiln-push-bench.XXXXXX)}
REG_PID=
cleanup() {
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/registry}, delete: {enabled: true}}
http: {addr: $REG}
EOF
# A fresh registry for each run: skopeo's blob-info cache would otherwise turn its later
# pushes into cross-repository mounts of what the earlier runs uploaded.
registry_up() {
  if [ -n "$REG_PID" ]; then kill "$REG_PID"; wait "$REG_PID" 2>/dev/null || true; fi
  rm -rf "$WORK/registry"
  "$REGISTRY_BIN" serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 50); do curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && break; sleep 0.2; done
}

# The image: an OCI layout with LAYERS tar layers of random bytes, loaded into a kiln store.
python3 - "$WORK/layout" "$SIZE_MB" "$LAYERS" <<'PY'
import hashlib, io, json, os, sys, tarfile
out, size_mb, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
blobs = os.path.join(out, "blobs", "sha256"); os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, d), "wb").write(data)
    return "sha256:" + d, len(data)
layers, diffs = [], []
per = size_mb * 1024 * 1024 // n
for i in range(n):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(f"data-{i}"); info.size = per; info.mtime = 0
        t.addfile(info, io.BytesIO(os.urandom(per)))
    d, s = put(buf.getvalue())
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})
    diffs.append(d)
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
cd, cs = put(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": layers}).encode()
md, ms = put(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]},
    open(os.path.join(out, "index.json"), "w"))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
STORE=$WORK/store
skopeo copy -q "oci:$WORK/layout:v1" "oci-archive:$WORK/image.tar:bench/big:v1" >/dev/null
"$KILN" --root "$STORE" load -i "$WORK/image.tar" >/dev/null
IMAGE=bench/big:v1

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A T
for run in $(seq "$RUNS"); do
  registry_up
  t0=$(now); "$KILN" --root "$STORE" push -q "$IMAGE" "$REG/kiln$run/big:v1" >/dev/null; t1=$(now)
  T[kiln_push]+="$(echo "$t1 - $t0" | bc) "
  t0=$(now); skopeo copy -q --dest-tls-verify=false "oci:$WORK/layout:v1" "docker://$REG/skopeo$run/big:v1"; t1=$(now)
  T[skopeo_push]+="$(echo "$t1 - $t0" | bc) "
  rm -rf "$WORK/pull-store" "$WORK/pull-layout"; sync
  t0=$(now); "$KILN" --root "$WORK/pull-store" pull -q "$REG/kiln$run/big:v1" >/dev/null; t1=$(now)
  T[kiln_pull]+="$(echo "$t1 - $t0" | bc) "
  t0=$(now); skopeo copy -q --src-tls-verify=false "docker://$REG/kiln$run/big:v1" "oci:$WORK/pull-layout:v1"; t1=$(now)
  T[skopeo_pull]+="$(echo "$t1 - $t0" | bc) "
done
for run in $(seq "$RUNS"); do
  t0=$(now); "$KILN" --root "$STORE" push -q "$IMAGE" "$REG/kiln$RUNS/big:v1" >/dev/null; t1=$(now)
  T[kiln_push_present]+="$(echo "($t1 - $t0) * 1000" | bc) "
done
med() { tr ' ' '\n' <<<"${T[$1]}" | grep . | median; }
printf '%-8s %10s %10s %8s\n' op kiln_s skopeo_s ratio
for op in push pull; do
  k=$(med "kiln_$op"); s=$(med "skopeo_$op")
  printf '%-8s %10.2f %10.2f %8.2f\n' "$op" "$k" "$s" "$(echo "$k / $s" | bc -l)"
done
printf 'push, every blob present: %.0f ms (median of %s; runs: %s)\n' "$(med kiln_push_present)" "$RUNS" "${T[kiln_push_present]}"
echo "runs (s): kiln push ${T[kiln_push]}| skopeo push ${T[skopeo_push]}| kiln pull ${T[kiln_pull]}| skopeo pull ${T[skopeo_pull]}"
