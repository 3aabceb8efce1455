# Shared by the side-by-side bench scripts in this folder (sourced, not run).
#
#   bench_setup NAME TOOL... -- [WORKDIR]
#
# Checks the tools are installed, builds the `export_cli` bench binary, and makes the generated
# ~400 MB bench tree under WORKDIR (default: a temp dir). Sets `bin`, `work` and `tree`.
# shellcheck shell=bash

bench_setup() {
    local name=$1 tool
    shift
    while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
        tool=$1
        shift
        command -v "$tool" >/dev/null || {
            echo "$name: $tool is not installed (apt-get install -y $tool)" >&2
            exit 1
        }
    done
    [ "${1:-}" = -- ] && shift
    work=${1:-$(mktemp -d)}
    mkdir -p "$work"
    tree="$work/tree"
    bin=$(cargo bench -p kiln-snapshotter --bench export_cli --no-run --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*export_cli[^"]*"' | cut -d'"' -f4)
    [ -x "$bin" ] || { echo "$name: could not build export_cli" >&2; exit 1; }
    [ -f "$tree/.complete" ] || "$bin" generate "$tree"
}
