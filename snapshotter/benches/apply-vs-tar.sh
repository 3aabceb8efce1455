#!/usr/bin/env bash
# Layer apply, kiln against `tar -xzf`, side by side in one hyperfine run, on the same gzip blob
# of the generated ~400 MB bench tree (20,000 small text files, 3 text and 2 random 50 MB files).
#
#   snapshotter/benches/apply-vs-tar.sh [WORKDIR]
#
# Both unpack into a fresh directory on the same filesystem; kiln also verifies the DiffID and
# blob digest while streaming and fsyncs nothing extra beyond its all-or-nothing rename.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=snapshotter/benches/lib.sh
. benches/lib.sh
bench_setup apply-vs-tar hyperfine tar -- "$@"
[ -f "$work/layer.tar.gz" ] || "$bin" export "$tree" gzip --save "$work/layer.tar.gz"

hyperfine --warmup 1 --runs "${RUNS:-5}" \
    --export-markdown "$work/apply-vs-tar.md" --export-json "$work/apply-vs-tar.json" \
    --prepare "rm -rf '$work/out' '$work/out.'*; sync" \
    -n 'tar -xzf' "mkdir '$work/out' && tar -xzf '$work/layer.tar.gz' -C '$work/out'" \
    -n 'kiln apply' "'$bin' apply '$work/layer.tar.gz' '$work/out'"
rm -rf "$work/out"
echo "results: $work/apply-vs-tar.md"
