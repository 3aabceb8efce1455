#!/usr/bin/env bash
# make-busybox-image.sh — build a tiny busybox base image as an OCI image layout, offline and
# reproducibly, from Debian's `busybox-static` package.
#
# Usage: testdata/make-busybox-image.sh OUT_DIR [TAG]
#
#   OUT_DIR  where the OCI image layout is written (oci-layout, index.json, blobs/sha256/...).
#            It must not exist or be an empty directory; it is created atomically (built next to it,
#            then renamed into place), so a reader never sees a half-written layout.
#   TAG      the `org.opencontainers.image.ref.name` annotation in index.json (default: latest),
#            i.e. the name to use in `oci:OUT_DIR:TAG` (skopeo) or `--layout OUT_DIR` (umoci).
#
# Output: progress on stderr; the manifest digest (sha256:...) on stdout.
#
# Environment:
#   SOURCE_DATE_EPOCH  timestamp (seconds since the epoch) used for every file mtime and for the
#                      config's `created` / history dates. Default: 0 (1970-01-01T00:00:00Z).
#
# The image: one gzip layer with /bin/busybox (statically linked), one relative symlink per applet
# (`busybox --list-full`, e.g. bin/sh -> busybox, usr/bin/env -> ../../bin/busybox), /etc/passwd and
# /etc/group with root (0) and nobody (65534), /root (0700), /tmp (1777), /home, and empty mount
# points /dev /proc /sys. Config: os linux, architecture from `dpkg --print-architecture`,
# Cmd ["sh"], the Docker default PATH.
#
# Determinism: the same busybox-static version, architecture, SOURCE_DATE_EPOCH and TAG give
# byte-identical blobs (hence the same digests) on any machine: tar entries are sorted by name,
# owners are numeric 0:0, modes are set explicitly (umask does not matter), mtimes are fixed, pax
# headers carry no atime/ctime, gzip stores no name/timestamp (-n), and JSON is written compactly by
# jq in a fixed key order.
#
# Where busybox comes from: /bin/busybox of the installed busybox-static package (no network).
# If the package is not installed: as root, it is installed with apt-get; otherwise the .deb is
# fetched with `apt-get download` and unpacked in a temp dir. A missing prerequisite exits with
# status 77 ("skip"), so a test harness can tell it apart from a genuine failure (status 1).
#
# Requires: bash, GNU tar, gzip, sha256sum, jq, dpkg, find, sort (coreutils).

set -euo pipefail
shopt -s nullglob

readonly EXIT_SKIP=77
readonly DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { printf 'make-busybox-image: error: %s\n' "$*" >&2; exit 1; }
skip() { printf 'make-busybox-image: missing prerequisite: %s\n' "$*" >&2; exit "$EXIT_SKIP"; }
log() { printf 'make-busybox-image: %s\n' "$*" >&2; }

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
}

# ---------------------------------------------------------------------------------------------
# Arguments and prerequisites
# ---------------------------------------------------------------------------------------------

[[ $# -ge 1 && $# -le 2 ]] || usage
case $1 in -h | --help) usage ;; esac
OUT_DIR=${1%/}
TAG=${2:-latest}
[[ -n $OUT_DIR ]] || die "OUT_DIR must not be empty"
# OCI image-spec ref.name grammar (a tag is a subset of it).
[[ $TAG =~ ^[A-Za-z0-9]+([._:/+@-][A-Za-z0-9]+)*$ ]] || die "invalid TAG: $TAG"

EPOCH=${SOURCE_DATE_EPOCH:-0}
[[ $EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be a non-negative integer, got: $EPOCH"

for tool in tar gzip sha256sum jq dpkg find sort stat; do
    command -v "$tool" >/dev/null 2>&1 || skip "'$tool' is not installed"
done
tar --version 2>/dev/null | grep -q 'GNU tar' || skip "GNU tar is required (tar --sort, --pax-option)"

if [[ -e $OUT_DIR ]]; then
    [[ -d $OUT_DIR ]] || die "$OUT_DIR exists and is not a directory"
    [[ -z $(find "$OUT_DIR" -mindepth 1 -maxdepth 1 -print -quit) ]] ||
        die "$OUT_DIR exists and is not empty (remove it first)"
fi
OUT_PARENT=$(dirname "$OUT_DIR")
mkdir -p "$OUT_PARENT"

# Everything is staged in one temp dir next to OUT_DIR (same filesystem, so the final rename is
# atomic) and removed on any exit.
WORK=$(mktemp -d "$OUT_PARENT/.make-busybox-image.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# umask must not leak into the image: every mode below is set explicitly, but be strict anyway.
umask 022
export LC_ALL=C TZ=UTC

CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# ---------------------------------------------------------------------------------------------
# Locate a statically linked busybox from the busybox-static package
# ---------------------------------------------------------------------------------------------

pkg_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

if ! pkg_installed busybox-static && [[ $EUID -eq 0 ]]; then
    log "busybox-static is not installed; installing it with apt-get"
    # Note: busybox-static conflicts with (and replaces) the dynamically linked `busybox` package.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >&2 ||
        { DEBIAN_FRONTEND=noninteractive apt-get update >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >&2; } ||
        skip "apt-get install busybox-static failed"
fi

if pkg_installed busybox-static; then
    # Use the file the package owns (not whatever `busybox` is first on PATH).
    dpkg-query -L busybox-static | grep -qx /bin/busybox ||
        die "busybox-static does not ship /bin/busybox (dpkg -L busybox-static)"
    BUSYBOX=/bin/busybox
    BB_VERSION=$(dpkg-query -W -f='${Version}' busybox-static)
else
    log "busybox-static is not installed; fetching it with apt-get download"
    command -v apt-get >/dev/null 2>&1 || skip "busybox-static is not installed and apt-get is unavailable"
    (cd "$WORK" && apt-get download busybox-static >&2) ||
        skip "busybox-static is not installed and 'apt-get download busybox-static' failed"
    debs=("$WORK"/busybox-static_*.deb)
    [[ ${#debs[@]} -eq 1 ]] || die "expected one busybox-static .deb, found ${#debs[@]}"
    dpkg-deb -x "${debs[0]}" "$WORK/deb"
    BUSYBOX=$WORK/deb/bin/busybox
    BB_VERSION=$(dpkg-deb -f "${debs[0]}" Version)
fi
[[ -f $BUSYBOX && -x $BUSYBOX ]] || die "$BUSYBOX is not an executable file"

# ---------------------------------------------------------------------------------------------
# Platform: Debian architecture -> OCI architecture/variant
# ---------------------------------------------------------------------------------------------

DEB_ARCH=$(dpkg --print-architecture)
VARIANT=
case $DEB_ARCH in
    amd64) ARCH=amd64 ;;
    arm64) ARCH=arm64 VARIANT=v8 ;;
    armhf) ARCH=arm VARIANT=v7 ;;
    armel) ARCH=arm VARIANT=v5 ;;
    i386) ARCH=386 ;;
    ppc64el) ARCH=ppc64le ;;
    s390x) ARCH=s390x ;;
    riscv64) ARCH=riscv64 ;;
    mips64el) ARCH=mips64le ;;
    mipsel) ARCH=mipsle ;;
    loong64) ARCH=loong64 ;;
    *) die "unsupported Debian architecture: $DEB_ARCH" ;;
esac

# ---------------------------------------------------------------------------------------------
# Root filesystem
# ---------------------------------------------------------------------------------------------

ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS"
for d in bin dev etc home proc root sbin sys tmp usr usr/bin usr/sbin var; do
    mkdir -p "$ROOTFS/$d"
done

install -m 0755 "$BUSYBOX" "$ROOTFS/bin/busybox"

# One symlink per applet, relative to its own directory: bin/sh -> busybox,
# usr/bin/env -> ../../bin/busybox, linuxrc -> bin/busybox. The list comes from the binary we ship
# (not from the host's busybox), so the links always match the applets it has.
applets=0
while IFS= read -r applet; do
    [[ -n $applet && $applet != bin/busybox ]] || continue
    [[ $applet != /* && $applet != *..* ]] || die "unexpected applet path: $applet"
    dir=$(dirname "$applet")
    up=
    if [[ $dir != . ]]; then
        mkdir -p "$ROOTFS/$dir"
        # one "../" per path component of the applet's directory
        IFS=/ read -r -a parts <<<"$dir"
        for _ in "${parts[@]}"; do up+=../; done
    fi
    if [[ $dir == bin ]]; then target=busybox; else target=${up}bin/busybox; fi
    # An applet listed twice keeps its first link; never overwrite the binary or a directory.
    [[ -e $ROOTFS/$applet || -L $ROOTFS/$applet ]] && continue
    ln -s "$target" "$ROOTFS/$applet"
    applets=$((applets + 1))
done < <("$BUSYBOX" --list-full | sort -u)
[[ $applets -gt 0 ]] || die "busybox --list-full listed no applets"
[[ -L $ROOTFS/bin/sh ]] || die "busybox has no 'sh' applet"

cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF

# Explicit modes (symlinks have none to set): directories 0755, files 0644, then the exceptions.
find "$ROOTFS" -type d -exec chmod 0755 {} +
find "$ROOTFS" -type f -exec chmod 0644 {} +
chmod 0755 "$ROOTFS/bin/busybox"
chmod 0700 "$ROOTFS/root"
chmod 1777 "$ROOTFS/tmp"

# ---------------------------------------------------------------------------------------------
# Blobs
# ---------------------------------------------------------------------------------------------

STAGE=$WORK/layout
BLOBS=$STAGE/blobs/sha256
mkdir -p "$BLOBS"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# Move FILE into the blob store under its digest; prints the hex digest.
add_blob() {
    local hex
    hex=$(sha256_of "$1")
    mv -f "$1" "$BLOBS/$hex"
    chmod 0644 "$BLOBS/$hex"
    printf '%s\n' "$hex"
}

# Layer: entries named without a "./" prefix (bin, bin/[, ...) as in registry images; top-level
# names are passed in C-locale order and --sort=name orders everything below them.
mapfile -t top < <(cd "$ROOTFS" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | sort)
tar -C "$ROOTFS" \
    --create --file="$WORK/layer.tar" \
    --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
    --no-acls --no-selinux --no-xattrs \
    -- "${top[@]}"
DIFF_ID=sha256:$(sha256_of "$WORK/layer.tar")
gzip -n -6 <"$WORK/layer.tar" >"$WORK/layer.tar.gz"
LAYER_HEX=$(add_blob "$WORK/layer.tar.gz")
LAYER_SIZE=$(size_of "$BLOBS/$LAYER_HEX")

# JSON documents are compact with a fixed key order (jq keeps insertion order) and no trailing
# newline, so their bytes — and digests — depend only on the values.
jq -n -c -j \
    --arg created "$CREATED" --arg arch "$ARCH" --arg variant "$VARIANT" \
    --arg path "PATH=$DEFAULT_PATH" --arg diff_id "$DIFF_ID" \
    --arg created_by "kiln testdata/make-busybox-image.sh: busybox-static $BB_VERSION ($DEB_ARCH), $applets applets" \
    '{created: $created, architecture: $arch}
     + (if $variant == "" then {} else {variant: $variant} end)
     + {os: "linux",
        config: {Env: [$path], Cmd: ["sh"]},
        rootfs: {type: "layers", diff_ids: [$diff_id]},
        history: [{created: $created, created_by: $created_by}]}' \
    >"$WORK/config.json"
CONFIG_HEX=$(add_blob "$WORK/config.json")
CONFIG_SIZE=$(size_of "$BLOBS/$CONFIG_HEX")

jq -n -c -j \
    --arg config "sha256:$CONFIG_HEX" --argjson config_size "$CONFIG_SIZE" \
    --arg layer "sha256:$LAYER_HEX" --argjson layer_size "$LAYER_SIZE" \
    '{schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json",
               digest: $config, size: $config_size},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
                digest: $layer, size: $layer_size}]}' \
    >"$WORK/manifest.json"
MANIFEST_HEX=$(add_blob "$WORK/manifest.json")
MANIFEST_SIZE=$(size_of "$BLOBS/$MANIFEST_HEX")

jq -n -c -j \
    --arg manifest "sha256:$MANIFEST_HEX" --argjson manifest_size "$MANIFEST_SIZE" \
    --arg tag "$TAG" --arg arch "$ARCH" --arg variant "$VARIANT" \
    '{schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json",
                   digest: $manifest, size: $manifest_size,
                   annotations: {"org.opencontainers.image.ref.name": $tag},
                   platform: ({architecture: $arch, os: "linux"}
                              + (if $variant == "" then {} else {variant: $variant} end))}]}' \
    >"$STAGE/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$STAGE/oci-layout"

# ---------------------------------------------------------------------------------------------
# Self-check, then publish atomically
# ---------------------------------------------------------------------------------------------

for blob in "$BLOBS"/*; do
    [[ $(sha256_of "$blob") == "$(basename "$blob")" ]] || die "blob digest mismatch: $blob"
done
[[ $(gzip -dc "$BLOBS/$LAYER_HEX" | sha256sum | cut -d' ' -f1) == "${DIFF_ID#sha256:}" ]] ||
    die "layer DiffID mismatch"

find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -type f -exec chmod 0644 {} +
# rename(2) replaces an empty directory and fails on a non-empty one (e.g. a concurrent writer
# that got there first), so OUT_DIR is either absent/empty or a complete layout.
mv -T "$STAGE" "$OUT_DIR" || die "could not move the layout into $OUT_DIR"

log "wrote $OUT_DIR ($TAG): manifest sha256:$MANIFEST_HEX, $ARCH${VARIANT:+/$VARIANT}, busybox-static $BB_VERSION, $applets applets"
printf 'sha256:%s\n' "$MANIFEST_HEX"
