#!/usr/bin/env bash
# Seeds the libFuzzer corpus of a frontend fuzz target from the Dockerfiles the project already
# has: BuildKit's parser corpus (positive and negative cases), the real-world Dockerfiles in
# shared/conformance, and testdata/dockerfiles. Files are named by content hash, so running it
# again adds nothing twice. The corpus is generated, not committed (see .gitignore).
#
#   usage: frontend/fuzz/seed-corpus.sh [TARGET]     (default target: parse_plan)
#
# SHARED overrides where shared/ is (default: ../shared beside the repository).

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
shared=${SHARED:-$repo/../shared}
target=${1:-parse_plan}
corpus=$here/corpus/$target

[[ -d $shared/conformance ]] || { echo "seed-corpus.sh: no $shared/conformance" >&2; exit 1; }
mkdir -p "$corpus"

count=0
while IFS= read -r -d '' file; do
    hash=$(sha256sum "$file" | cut -c1-16)
    cp "$file" "$corpus/seed-$hash"
    count=$((count + 1))
done < <(find "$shared/conformance/buildkit-parser" "$shared/conformance/realworld" \
    "$repo/testdata/dockerfiles" \
    -type f \( -name Dockerfile -o -name '*.Dockerfile' \) -print0)

echo "seeded $corpus from $count files ($(find "$corpus" -type f | wc -l) inputs in the corpus)"
