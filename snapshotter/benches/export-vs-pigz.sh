#!/usr/bin/env bash
# Layer export, kiln against `tar -cf - DIR | pigz -p 2 -6`, side by side in one hyperfine run,
# on the generated ~400 MB bench tree (20,000 small text files, 3 text and 2 random 50 MB files).
#
#   snapshotter/benches/export-vs-pigz.sh [WORKDIR]
#
# Needs pigz and hyperfine (apt-get install -y pigz hyperfine). WORKDIR (default: a temp dir)
# holds the tree, the previous blobs for the re-export runs and the results (Markdown, JSON).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=snapshotter/benches/lib.sh
. benches/lib.sh
bench_setup export-vs-pigz pigz hyperfine tar -- "$@"
# The previous blobs the re-export runs reuse: the unchanged tree, exported once.
"$bin" export "$tree" gzip --save "$work/prev-gzip.blob"
"$bin" export "$tree" zstd --save "$work/prev-zstd.blob"

hyperfine --warmup 1 --runs "${RUNS:-5}" \
    --export-markdown "$work/export-vs-pigz.md" --export-json "$work/export-vs-pigz.json" \
    -n 'tar | pigz -p 2 -6' "tar -cf - -C '$tree' . | pigz -p 2 -6 > /dev/null" \
    -n 'kiln gzip' "'$bin' export '$tree' gzip" \
    -n 'kiln zstd' "'$bin' export '$tree' zstd" \
    -n 'kiln gzip re-export (1 small file changed)' \
    "'$bin' export '$tree' gzip --previous '$work/prev-gzip.blob' --change-one" \
    -n 'kiln zstd re-export (1 small file changed)' \
    "'$bin' export '$tree' zstd --previous '$work/prev-zstd.blob' --change-one"

echo "results: $work/export-vs-pigz.md"
