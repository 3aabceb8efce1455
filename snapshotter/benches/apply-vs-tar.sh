#!/usr/bin/env bash
# Layer apply, kiln against `tar -xzf`, side by side in one hyperfine run, on the same gzip blob
# of the generated ~400 MB bench tree (20,000 small text files, 3 text and 2 random 50 MB files).
#
#   snapshotter/benches/apply-vs-tar.sh [WORKDIR]
#
# Every run unpacks into a new directory of WORKDIR/apply-out (same filesystem for all); nothing
# is deleted until all runs are done. Deleting a tree just before unpacking another one makes
# ext4 slow: its inode allocator skips inodes freed in the last 60 s (`recently_deleted`, 360 s
# while their inode table block is dirty), re-reading the inode table for each, and with 20,000
# freshly freed inodes in the same block groups every create scans past them (earlier runs of
# this script that removed the output before each run measured that, 8-23 s for either tool).
# `sync` before each run (untimed) keeps one run's writeback out of the next.
#
# Rows: `tar -xzf`; `kiln apply` as kiln applies layers (the staging tree is syncfs'ed before
# the rename that makes it visible); `kiln apply --no-sync` (writeback left to the kernel, as
# tar leaves it). RUNS (default 5) runs each after one warm-up.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=snapshotter/benches/lib.sh
. benches/lib.sh
bench_setup apply-vs-tar hyperfine tar -- "$@"
blob="$work/layer.tar.gz"
[ -f "$blob" ] || "$bin" export "$tree" gzip --save "$blob"

out="$work/apply-out"
if [ -e "$out" ]; then
    # Left by an interrupted run: remove it and let ext4 forget the freed inodes.
    rm -rf "$out"
    sync
    echo "apply-vs-tar: removed an old $out; waiting 65 s for ext4 to stop skipping its inodes" >&2
    sleep 65
fi
mkdir -p "$out"
uptime

hyperfine --warmup 1 --runs "${RUNS:-5}" \
    --export-markdown "$work/apply-vs-tar.md" --export-json "$work/apply-vs-tar.json" \
    --prepare sync \
    -n 'tar -xzf' "d=\$(mktemp -d -p '$out') && tar -xzf '$blob' -C \"\$d\"" \
    -n 'kiln apply' "'$bin' apply '$blob' \"\$(mktemp -u -p '$out')\"" \
    -n 'kiln apply --no-sync' "'$bin' apply '$blob' \"\$(mktemp -u -p '$out')\" --no-sync"
uptime
rm -rf "$out"
echo "results: $work/apply-vs-tar.md"
