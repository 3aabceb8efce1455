#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine (as root): install what kiln and its tests need,
# build kiln, then run the main job offline: build the example image in testdata/example into
# the embedded store and list it.
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

./target/release/kiln build -t kiln-example:latest testdata/example
./target/release/kiln images
