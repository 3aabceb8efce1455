#!/usr/bin/env bash
# End-to-end builds: kiln, Docker's BuildKit (`docker build` against the bench dockerd) and
# `buildah build`, side by side in one run, on the cases of ../shared/bench/cases (multistage,
# bigcopy, debian-run, many-layers). Per case and tool, with hyperfine (RUNS runs, median):
#   cold   every store and cache emptied before each run (the base image is pulled again from
#          localhost:5000 and the whole context is read);
#   noop   the same build again, nothing changed (1 warm-up run);
#   touch  the build after rewriting the case's TOUCH_FILE (case.env) with new content.
# Before every no-op and touch run, `sync` (untimed, in hyperfine's --prepare): a run does not
# wait for the writeback of what the previous command (often another tool's cold build) left
# dirty, which would otherwise land on whichever tool's fsync comes first.
# The three tools take turns within each measurement (kiln cold, BuildKit cold, buildah cold, kiln
# no-op, ...), so a change of machine load hits them alike. Then, kiln only:
#   flat   no-op rebuild of a `COPY . /app` context of FLAT_FILES small files and of 10 times as many;
#   rss    peak RSS of a cold kiln build of bigcopy (`/usr/bin/time -v`, "Maximum resident set size");
#   cachefrom  per case, a build in a fresh store with `--cache-from` the cache that the case's
#          store exported (`--cache-to type=registry,mode=max` to localhost:5000): what a new CI
#          runner pays, next to kiln's cold build.
# Prints a table (case, measurement, kiln s, buildkit s, buildah s, kiln/buildkit, kiln/buildah) and
# writes TSV, hyperfine JSON and build logs to $BENCH_RESULTS/<UTC time>/ (also `latest`).
#
#   sudo benches/build-vs-builders.sh [--cases "multistage bigcopy debian-run many-layers"]
#                                     [--tools "kiln docker buildah"]
#                                     [--extras "flat rss cachefrom"]
#
# Env: RUNS (3), KILN (a kiln binary; default: `cargo build --release`, then target/release/kiln),
# KILN_BUILD_FLAGS (extra `kiln build` flags), FLAT_FILES (5000), BENCH_RESULTS
# (/var/tmp/kiln-bench-results), BENCH_WORK (/var/tmp/kiln-bench-work: contexts, stores),
# BUILDAH_ROOT (buildah's storage for the bench, default BENCH_WORK/buildah-root; empty = the
# machine's default storage), KEEP_STATE=1 (keep the kiln stores, buildah storage and docker images).
# Needs root and ../shared/bench/setup.sh (run here if the registries, dockerd or the base images
# are missing; ~30 s on a machine that already has the packages). Not run in CI.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED_BENCH=${SHARED_BENCH:-$REPO/../shared/bench}
: "${BENCH_WORK:=/var/tmp/kiln-bench-work}"
: "${BENCH_RESULTS:=/var/tmp/kiln-bench-results}"
export BENCH_WORK BENCH_RESULTS
# lib.sh: REG, DOCKER, DOCKER_BUILD_FLAGS, BUILDAH_BUILD_FLAGS, WORK, RESULTS, RUNS, log,
# registry_up, dockerd_up.
# shellcheck source=/dev/null
. "$SHARED_BENCH/lib.sh"

CASES="multistage bigcopy debian-run many-layers"
TOOLS="kiln docker buildah"
EXTRAS="flat rss cachefrom"
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --cases) CASES=$2; shift 2;;
    --cases=*) CASES=${1#*=}; shift;;
    --tools) TOOLS=$2; shift 2;;
    --tools=*) TOOLS=${1#*=}; shift;;
    --extras) EXTRAS=$2; shift 2;;
    --extras=*) EXTRAS=${1#*=}; shift;;
    -h|--help) usage; exit 0;;
    *) echo "build-vs-builders: unknown argument '$1' (see --help)" >&2; exit 2;;
  esac
done
TOOLS=${TOOLS//buildkit/docker}
for t in $TOOLS; do
  case $t in kiln|docker|buildah) ;; *) echo "build-vs-builders: unknown tool '$t'" >&2; exit 2;; esac
done
for c in $CASES; do
  [ -f "$SHARED_BENCH/cases/$c/case.env" ] || { echo "build-vs-builders: no case '$c' in $SHARED_BENCH/cases" >&2; exit 2; }
done
for e in $EXTRAS; do
  case $e in flat|rss|cachefrom) ;; *) echo "build-vs-builders: unknown extra '$e' (flat, rss, cachefrom)" >&2; exit 2;; esac
done
has() { case " $1 " in *" $2 "*) return 0;; *) return 1;; esac; }
has "$TOOLS" kiln || EXTRAS=""
[ "$(id -u)" = 0 ] || { echo "build-vs-builders: needs root (as the builders do here)" >&2; exit 1; }

FLAT_FILES=${FLAT_FILES:-5000}
KILN_BUILD_FLAGS=${KILN_BUILD_FLAGS:-}
BUILDAH_ROOT=${BUILDAH_ROOT-$WORK/buildah-root}
BUILDAH_RUNROOT=${BUILDAH_RUNROOT:-/run/kiln-bench-buildah}
KROOTS=$WORK/kiln-roots          # one kiln store per case (and per extra)
TRASH=$WORK/trash                # stores set aside by kiln's cold runs, deleted at exit

# ------------------------------------------------------------------ tools and the bench services
for tool in hyperfine jq curl skopeo; do
  command -v "$tool" >/dev/null || NEED_SETUP=1
done
has "$TOOLS" buildah && { command -v buildah >/dev/null || NEED_SETUP=1; }
has "$TOOLS" docker && { [ -x "$DOCKER" ] || NEED_SETUP=1; }
base_images_up() {
  skopeo inspect --raw --tls-verify=false "docker://$REG/busybox:latest" >/dev/null 2>&1 &&
    skopeo inspect --raw --tls-verify=false "docker://$REG/debian:bookworm-slim" >/dev/null 2>&1
}
if [ -n "${NEED_SETUP:-}" ] || ! registry_up 5000 || ! base_images_up ||
   { has "$TOOLS" docker && ! dockerd_up; }; then
  log "registries/dockerd/base images not all up: running $SHARED_BENCH/setup.sh"
  t0=$(date +%s)
  bash "$SHARED_BENCH/setup.sh"
  log "setup.sh took $(( $(date +%s) - t0 )) s"
fi
if has "$EXTRAS" rss && [ ! -x /usr/bin/time ]; then
  log "installing GNU time (for the peak RSS)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi

mkdir -p "$WORK"
if has "$TOOLS" kiln; then
  if [ -z "${KILN:-}" ]; then
    log "cargo build --release (kiln)"
    (cd "$REPO" && cargo build --release -q -p kiln --bin kiln) ||
      { log "the release build failed; give a binary with KILN=path"; exit 1; }
    KILN=$REPO/target/release/kiln
  fi
  [ -x "$KILN" ] || { log "KILN=$KILN is not an executable"; exit 1; }
  # A private copy: others may rebuild target/release/kiln while this runs.
  cp "$KILN" "$WORK/kiln"
  KILN=$WORK/kiln
fi

RUN_DIR=$RESULTS/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_DIR" "$KROOTS" "$TRASH"
ln -sfn "$(basename "$RUN_DIR")" "$RESULTS/latest"

{
  echo "date	$(date -u +%FT%TZ)"
  echo "host	$(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "runs	$RUNS"
  echo "cases	$CASES"
  echo "tools	$TOOLS"
  echo "extras	$EXTRAS"
  echo "repo	$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
  if has "$TOOLS" kiln; then echo "kiln	$("$KILN" --version)  flags: --progress=plain $KILN_BUILD_FLAGS"; fi
  if has "$TOOLS" docker; then
    echo "docker	$($DOCKER version --format '{{.Server.Version}}' 2>/dev/null)  flags: $DOCKER_BUILD_FLAGS"
  fi
  if has "$TOOLS" buildah; then
    echo "buildah	$(buildah --version)  flags: $BUILDAH_BUILD_FLAGS  storage: ${BUILDAH_ROOT:-default}"
  fi
} >"$RUN_DIR/env.tsv"
log "results in $RUN_DIR"

q() { printf '%q' "$1"; }
BAH="buildah"
[ -n "$BUILDAH_ROOT" ] && BAH="buildah --root $(q "$BUILDAH_ROOT") --runroot $(q "$BUILDAH_RUNROOT")"

cleanup() {
  rm -rf "${TRASH:?}"
  [ "${KEEP_STATE:-0}" = 1 ] && return 0
  rm -rf "${KROOTS:?}" "${WORK:?}/kiln"
  if has "$TOOLS" buildah && [ -n "$BUILDAH_ROOT" ] && [ -d "$BUILDAH_ROOT" ]; then
    $BAH rm --all >/dev/null 2>&1 || true
    $BAH rmi --all --force >/dev/null 2>&1 || true
    # containers/storage may leave its overlay home mounted; never delete through a mount.
    grep -oE " ($BUILDAH_ROOT|$BUILDAH_RUNROOT)[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l || true
    rm -rf "${BUILDAH_ROOT:?}" "${BUILDAH_RUNROOT:?}"
  fi
  if has "$TOOLS" docker && dockerd_up; then
    local c
    for c in $CASES; do $DOCKER image rm -f "kiln-bench/$c:docker" >/dev/null 2>&1 || true; done
    $DOCKER image prune -af --filter label=kiln-bench=1 >/dev/null 2>&1 || true
    $DOCKER builder prune -af >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ measuring
RESULTS_TSV=$RUN_DIR/results.tsv   # case, measurement, tool, median, mean, min, max, runs
printf 'case\tmeasurement\ttool\tmedian_s\tmean_s\tmin_s\tmax_s\truns\n' >"$RESULTS_TSV"

# hf CASE MEASUREMENT TOOL PREPARE CMD [hyperfine args...]
# The command's output goes to OUT/MEASUREMENT-TOOL.log (the last run's); a failing run's output is
# kept as ...fail.PID.log and the measurement is retried once, as ../shared/bench/bench-case.sh does
# (buildah 1.28 fails about one build in 60 here). A measurement that fails twice is recorded as
# "fail" and the run goes on.
hf() {
  local case=$1 meas=$2 tool=$3 prep=$4 cmd=$5; shift 5
  local out=$RUN_DIR/$case name=$meas-$tool
  mkdir -p "$out"
  local lastlog
  lastlog=$(q "$out/$name.log")
  local failog wrapped
  failog=$(q "$out/$name").fail.\$\$.log
  wrapped="$cmd >$lastlog 2>&1 || { cp $lastlog $failog; exit 1; }"
  local args=(--runs "$RUNS" --export-json "$out/$name.json" -n "$name" --style basic)
  [ -n "$prep" ] && args+=(--prepare "$prep")
  local try ok=0
  for try in 1 2; do
    if hyperfine "${args[@]}" "$@" "$wrapped" >"$out/$name.txt" 2>&1; then ok=1; break; fi
    log "FAILED: $case $name (try $try):"
    tail -5 "$out/$name".fail.*.log >&2 2>/dev/null || tail -5 "$out/$name.txt" >&2
  done
  if [ "$ok" = 0 ]; then
    printf '%s\t%s\t%s\tfail\tfail\tfail\tfail\t%s\n' "$case" "$meas" "$tool" "$RUNS" >>"$RESULTS_TSV"
    return 1
  fi
  jq -r --arg c "$case" --arg m "$meas" --arg t "$tool" --arg r "$RUNS" \
    '.results[0] | [$c, $m, $t, .median, .mean, .min, .max, $r] | @tsv' "$out/$name.json" >>"$RESULTS_TSV"
  log "$(tail -1 "$RESULTS_TSV" | awk -F'\t' '{printf "%-12s %-6s %-8s median %8.3f s (min %.3f, max %.3f)", $1, $2, $3, $4, $6, $7}')"
}

# set_tool TOOL CASE CTX: BUILD (the build command) and COLD_PREP (empties that tool's store/cache).
set_tool() {
  local tool=$1 case=$2 ctx=$3 kroot
  case $tool in
    kiln)
      kroot=$(q "$KROOTS/$case")
      BUILD="$(q "$KILN") build --root $kroot --progress=plain $KILN_BUILD_FLAGS -t kiln-bench/$case:kiln $(q "$ctx")"
      # A fresh store per run. The old one is moved aside and deleted when the script exits, not
      # right before a timed run: ext4 makes creates slow for a while after many deletes (see
      # "layers/apply" in BENCHMARKS.md).
      COLD_PREP="if [ -e $kroot ]; then mv $kroot $(q "$TRASH")/kiln-root.\$\$; fi";;
    docker)
      # The label marks this script's images (the ones a rebuild leaves untagged too) for cleanup.
      BUILD="$DOCKER build $DOCKER_BUILD_FLAGS --label kiln-bench=1 -t kiln-bench/$case:docker $(q "$ctx")"
      # Only this script's image, the base images and the build cache: other users' images stay.
      COLD_PREP="$DOCKER image rm -f kiln-bench/$case:docker $REG/busybox:latest $REG/debian:bookworm-slim >/dev/null 2>&1; $DOCKER builder prune -af >/dev/null";;
    buildah)
      BUILD="$BAH build $BUILDAH_BUILD_FLAGS -t kiln-bench/$case:buildah $(q "$ctx")"
      COLD_PREP="$BAH rm --all >/dev/null; $BAH rmi --all --force >/dev/null 2>&1; true";;
  esac
}

for CASE in $CASES; do
  CDIR=$SHARED_BENCH/cases/$CASE
  CTX=$WORK/$CASE
  TOUCH_FILE=; BUILDAH_EXTRA_COLD=
  # shellcheck source=/dev/null
  . "$CDIR/case.env"
  log "$CASE: generating the context in $CTX"
  bash "$CDIR/gen.sh" "$CTX"
  for t in $TOOLS; do
    set_tool "$t" "$CASE" "$CTX"
    log "$CASE/$t: cold"
    hf "$CASE" cold "$t" "$COLD_PREP" "$BUILD" || true
  done
  for t in $TOOLS; do
    set_tool "$t" "$CASE" "$CTX"
    log "$CASE/$t: no-op rebuild"
    hf "$CASE" noop "$t" "sync" "$BUILD" --warmup 1 || true
  done
  for t in $TOOLS; do
    set_tool "$t" "$CASE" "$CTX"
    log "$CASE/$t: rebuild after rewriting $TOUCH_FILE"
    hf "$CASE" touch "$t" "date +%s%N > $(q "$CTX/$TOUCH_FILE"); sync" "$BUILD" || true
  done
  if has "$TOOLS" buildah && [ -n "$BUILDAH_EXTRA_COLD" ]; then
    # case.env's extra buildah flags (multistage: --jobs=4, parallel stages); compared with kiln cold
    set_tool buildah "$CASE" "$CTX"
    log "$CASE/buildah: cold with $BUILDAH_EXTRA_COLD"
    hf "$CASE" "cold($BUILDAH_EXTRA_COLD)" buildah "$COLD_PREP" \
      "$BAH build $BUILDAH_BUILD_FLAGS $BUILDAH_EXTRA_COLD -t kiln-bench/$CASE:buildah $(q "$CTX")" || true
  fi
  bash "$CDIR/gen.sh" "$CTX"   # reset the touched file
done

# ------------------------------------------------------------------ kiln only: flat in context size
EXTRAS_TSV=$RUN_DIR/extras.tsv     # name, value, unit
printf 'name\tvalue\tunit\n' >"$EXTRAS_TSV"

# gen_flat DIR N: a context of N small files (100 per directory) and a `COPY . /app` Dockerfile.
gen_flat() {
  local dir=$1 n=$2 i sub
  if [ ! -f "$dir/.gen-$n" ]; then
    rm -rf "$dir"
    for ((i = 0; i < n; i++)); do
      printf -v sub '%s/src/d%04d' "$dir" $((i / 100))
      [ $((i % 100)) = 0 ] && mkdir -p "$sub"
      printf 'small file %d\n' "$i" >"$sub/f$i.txt"
    done
    touch "$dir/.gen-$n"
  fi
  printf 'FROM %s/busybox:latest\nCOPY . /app\n' "$REG" >"$dir/Dockerfile"
  printf '.gen-*\n' >"$dir/.dockerignore"
}

if has "$EXTRAS" flat; then
  for n in "$FLAT_FILES" $((FLAT_FILES * 10)); do
    ctx=$WORK/flat-$n
    log "flat: context of $n files in $ctx"
    gen_flat "$ctx" "$n"
    set_tool kiln "flat-$n" "$ctx"
    bash -c "$COLD_PREP; $BUILD" >"$RUN_DIR/flat-$n-first-build.log" 2>&1 ||
      { log "flat: the first build of $ctx failed, see $RUN_DIR/flat-$n-first-build.log"; continue; }
    hf "flat-$n" noop kiln "" "$BUILD" --warmup 1 || true
  done
  small=$(awk -F'\t' -v c="flat-$FLAT_FILES" '$1 == c && $2 == "noop" {print $4}' "$RESULTS_TSV")
  large=$(awk -F'\t' -v c="flat-$((FLAT_FILES * 10))" '$1 == c && $2 == "noop" {print $4}' "$RESULTS_TSV")
  {
    printf 'flat-noop-%s-files\t%s\ts\n' "$FLAT_FILES" "${small:-fail}"
    printf 'flat-noop-%s-files\t%s\ts\n' $((FLAT_FILES * 10)) "${large:-fail}"
    printf 'flat-noop-ratio-10x-over-1x\t%s\tratio\n' \
      "$(awk -v a="${small:-x}" -v b="${large:-x}" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.3f", b / a; else print "fail" }')"
  } >>"$EXTRAS_TSV"
fi

# ------------------------------------------------------------------ kiln only: peak RSS, cold bigcopy
if has "$EXTRAS" rss; then
  ctx=$WORK/bigcopy
  log "rss: cold kiln build of bigcopy ($ctx) under /usr/bin/time -v"
  bash "$SHARED_BENCH/cases/bigcopy/gen.sh" "$ctx"
  set_tool kiln bigcopy-rss "$ctx"
  bash -c "$COLD_PREP"
  if /usr/bin/time -v -o "$RUN_DIR/rss-bigcopy.time.txt" bash -c "exec $BUILD" >"$RUN_DIR/rss-bigcopy.log" 2>&1; then
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$RUN_DIR/rss-bigcopy.time.txt")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$RUN_DIR/rss-bigcopy.time.txt")
    printf 'bigcopy-cold-peak-rss\t%s\tKiB\n' "$kb" >>"$EXTRAS_TSV"
    printf 'bigcopy-cold-wall\t%s\tm:ss\n' "$wall" >>"$EXTRAS_TSV"
    log "rss: peak $kb KiB ($((kb / 1024)) MiB), wall $wall"
  else
    printf 'bigcopy-cold-peak-rss\tfail\tKiB\n' >>"$EXTRAS_TSV"
    log "rss: the build failed, see $RUN_DIR/rss-bigcopy.log"
  fi
fi
# ------------------------------------------------------------------ kiln only: a fresh store with --cache-from
if has "$EXTRAS" cachefrom; then
  for CASE in $CASES; do
    CTX=$WORK/$CASE
    bash "$SHARED_BENCH/cases/$CASE/gen.sh" "$CTX"
    cache_ref=$REG/kiln-bench-cache/$CASE:cache
    set_tool kiln "$CASE" "$CTX"
    log "cachefrom: exporting $CASE's cache to $cache_ref"
    if ! bash -c "$BUILD --cache-to type=registry,ref=$cache_ref,mode=max" >"$RUN_DIR/cachefrom-$CASE-export.log" 2>&1; then
      log "cachefrom: the export failed, see $RUN_DIR/cachefrom-$CASE-export.log"
      continue
    fi
    set_tool kiln "$CASE-cachefrom" "$CTX"
    hf "$CASE" cachefrom kiln "$COLD_PREP" "$BUILD --cache-from type=registry,ref=$cache_ref" || true
    awk -F'\t' -v c="$CASE" '
      $1 == c && $3 == "kiln" && $2 == "cold" { cold = $4 }
      $1 == c && $3 == "kiln" && $2 == "cachefrom" { from = $4 }
      END { printf "%s-cachefrom-over-cold\t%s\tratio\n", c, (cold + 0 > 0 && from + 0 > 0) ? sprintf("%.3f", from / cold) : "-" }
    ' "$RESULTS_TSV" >>"$EXTRAS_TSV"
  done
fi
echo "load at end	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RUN_DIR/env.tsv"

# ------------------------------------------------------------------ summary
RATIOS_TSV=$RUN_DIR/ratios.tsv
awk -F'\t' -v OFS='\t' '
  NR == 1 { next }
  {
    key = $1 SUBSEP $2
    if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    t[key, $3] = $4
  }
  function ratio(a, b) { return (a == "" || b == "" || a == "fail" || b == "fail" || b + 0 == 0) ? "-" : sprintf("%.3f", a / b) }
  function val(x) { return x == "" ? "-" : x }
  END {
    print "case", "measurement", "kiln_s", "buildkit_s", "buildah_s", "kiln/buildkit", "kiln/buildah"
    for (i = 1; i <= n; i++) {
      split(order[i], kc, SUBSEP)
      k = t[order[i], "kiln"]; d = t[order[i], "docker"]; b = t[order[i], "buildah"]
      # buildah with extra cold flags is compared with kiln cold
      if (kc[2] ~ /^cold\(/ && k == "") k = t[kc[1] SUBSEP "cold", "kiln"]
      print kc[1], kc[2], val(k), val(d), val(b), ratio(k, d), ratio(k, b)
    }
  }' "$RESULTS_TSV" >"$RATIOS_TSV"

echo
echo "kiln vs BuildKit vs buildah: median seconds of $RUNS run(s); ratio = kiln time / other tool's time"
awk -F'\t' '
  function num(x) { return x ~ /^[0-9.]+$/ ? sprintf("%.3f", x) : x }
  { printf "%-12s %-16s %9s %11s %10s %14s %13s\n", $1, $2, num($3), num($4), num($5), $6, $7 }' "$RATIOS_TSV"
if [ -n "$EXTRAS" ]; then
  echo
  echo "kiln only:"
  awk -F'\t' 'NR > 1 { printf "  %-32s %s %s\n", $1, $2, $3 }' "$EXTRAS_TSV"
fi
echo
echo "TSV: $RATIOS_TSV, $RESULTS_TSV${EXTRAS:+, $EXTRAS_TSV}"
