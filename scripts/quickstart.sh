#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine (as root): install what kiln and its tests need,
# build kiln, then run the main job offline: make a busybox base image from Debian's
# busybox-static (FROM scratch), build the example image in testdata/example on it (COPY, a RUN
# in kiln's sandbox, metadata) into the embedded store, and list them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(skopeo umoci docker-registry busybox-static jq curl ca-certificates pigz zstd build-essential pkg-config)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo build --release --locked

# The base: busybox with its applets, and the users the example runs as.
base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
mkdir -p "$base/rootfs/bin" "$base/rootfs/etc" "$base/rootfs/root" "$base/rootfs/tmp"
chmod 1777 "$base/rootfs/tmp"
cp /bin/busybox "$base/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -s busybox "$base/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$base/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$base/rootfs/etc/group"
printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["sh"]\n' >"$base/Dockerfile"

./target/release/kiln build -t kiln-example-base:latest "$base"
./target/release/kiln build -t kiln-example:latest testdata/example
./target/release/kiln images
