#!/usr/bin/env bash
# Container start-to-exit of /bin/true on a busybox rootfs: kiln's embedded sandbox, `crun run`
# and `runc run`, side by side in one run (100 runs each by default, each backend's runs back to
# back as hyperfine runs them; `--order interleaved` rotates backends every run instead — see
# benches/sandbox_start.rs for why that mixes one run's kernel teardown into the next), printing
# the medians and the ratios kiln/crun (target <= 0.5) and kiln/runc (target <= 0.2).
#
#   sudo benches/sandbox-vs-runtimes.sh [--runs N] [--backends kiln,crun,runc] [--spec CONFIG.json]
#                                       [--order blocks|interleaved] [--settle-ms MS]
#
# Needs root, runc, crun and Debian's busybox-static. All three go through
# `kiln::sandbox::start` with the same spec (see benches/sandbox_start.rs); the crun and runc rows
# include kiln's bundle handling, which is also timed alone ("bundle only"). Not run in CI.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = 0 ] || { echo "sandbox-vs-runtimes: needs root (containers, cgroups)" >&2; exit 1; }
for tool in runc crun busybox; do
    command -v "$tool" >/dev/null || {
        pkg=$tool
        [ "$tool" = busybox ] && pkg=busybox-static
        echo "sandbox-vs-runtimes: $tool is not installed (apt-get install -y $pkg)" >&2
        exit 1
    }
done

bin=$(cargo bench -p kiln --bench sandbox_start --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*sandbox_start[^"]*"' | cut -d'"' -f4)
[ -x "$bin" ] || { echo "sandbox-vs-runtimes: could not build the sandbox_start bench" >&2; exit 1; }

echo "$(uname -r), $(nproc) CPUs, $(runc --version | head -1), $(crun --version | head -1)"
exec "$bin" --bench --runs "${RUNS:-100}" "$@"
