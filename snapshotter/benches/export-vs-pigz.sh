#!/usr/bin/env bash
# Layer export, kiln against `tar -cf - DIR | pigz -p 2 -6`, side by side in one hyperfine run,
# on the generated ~400 MB bench tree (20,000 small text files, 3 text and 2 random 50 MB files),
# and kiln's incremental re-export after one file changed.
#
#   snapshotter/benches/export-vs-pigz.sh [WORKDIR]
#
# Needs pigz and hyperfine (apt-get install -y pigz hyperfine). WORKDIR (default: a temp dir)
# holds the tree, the previous blobs for the re-export runs and the results (Markdown, JSON).
#
# A re-export run is prepared (untimed) by waiting 3 s (so every file's ctime is older than the
# racy margin, `compress::RACY_MARGIN`, and its identity is recorded) and exporting the tree as
# it is as the previous blob. The timed command appends a line to one file on disk, re-exports
# with the previous blob, and truncates the file back. The tar holds `large/` (250 MB: the five
# large files) before `small/` (169 MB), so the changed files sit at these points of the stream:
# `large/random-0.bin`, the very first file (0%); `small/d000/f00000.txt`, the first small file
# (60%); `small/d050/f10000.txt`, the middle small file (80%); `small/d099/f19999.txt`, the last
# one (100%).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=snapshotter/benches/lib.sh
. benches/lib.sh
bench_setup export-vs-pigz pigz hyperfine tar -- "$@"

reexport() { # NAME CODEC FILE
    local prev="$work/prev-$2.blob"
    prepares+=(--prepare "sleep 3 && '$bin' export '$tree' $2 --save '$prev' > /dev/null")
    commands+=(-n "$1" "'$bin' export '$tree' $2 --previous '$prev' --change '$3'")
}
prepares=()
commands=()
for _ in 1 2 3; do
    prepares+=(--prepare true)
done
commands+=(-n 'tar | pigz -p 2 -6' "tar -cf - -C '$tree' . | pigz -p 2 -6 > /dev/null")
commands+=(-n 'kiln gzip' "'$bin' export '$tree' gzip")
commands+=(-n 'kiln zstd' "'$bin' export '$tree' zstd")
reexport 'kiln gzip re-export, small file at 80% changed' gzip small/d050/f10000.txt
reexport 'kiln zstd re-export, small file at 80% changed' zstd small/d050/f10000.txt
reexport 'kiln gzip re-export, first small file (60%) changed' gzip small/d000/f00000.txt
reexport 'kiln gzip re-export, last file (100%) changed' gzip small/d099/f19999.txt
reexport 'kiln gzip re-export, first file (0%, 50 MB) changed' gzip large/random-0.bin

uptime
hyperfine --warmup 1 --runs "${RUNS:-5}" \
    --export-markdown "$work/export-vs-pigz.md" --export-json "$work/export-vs-pigz.json" \
    "${prepares[@]}" "${commands[@]}"
uptime

# What each re-export read (one more run each, outside the timing).
for file in large/random-0.bin small/d000/f00000.txt small/d050/f10000.txt small/d099/f19999.txt; do
    sleep 3
    "$bin" export "$tree" gzip --save "$work/prev-gzip.blob" > /dev/null
    echo "$file: $("$bin" export "$tree" gzip --previous "$work/prev-gzip.blob" --change "$file")"
done
echo "results: $work/export-vs-pigz.md"
