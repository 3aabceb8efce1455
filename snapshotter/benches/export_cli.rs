//! A command-line export of a directory, for `benches/export-vs-pigz.sh` to time with hyperfine
//! next to `tar | pigz` (criterion's `export` bench measures the same in-process).
//!
//! ```text
//! export_cli generate DIR
//! export_cli export DIR gzip|zstd|none|zstdmt [--save BLOB] [--previous BLOB] [--change FILE | --change-one] [--threads N]
//! export_cli apply BLOB TARGET [--no-sync]
//! ```
//! `apply` unpacks a layer blob into a new directory with `snapshotter::apply` (flat target,
//! digests computed while streaming), for `benches/apply-vs-tar.sh`: by default as kiln applies
//! layers (the staging tree is `syncfs`ed before it is renamed into place), with `--no-sync`
//! leaving writeback to the kernel as `tar` does.
//! `--save` writes the blob and its member index (`BLOB.index.json`); `--previous` re-exports
//! reusing a saved blob; `--change FILE` appends a line to FILE (relative to DIR) on disk before
//! the export and truncates it back after (`--change-one`: the bench's small file in the middle
//! of the small files, `support::CHANGED_FILE`).

mod support;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use snapshotter::apply::{ApplyExpect, ApplyOptions, Durability, WhiteoutMode, apply};
use snapshotter::compress::{EncodeOptions, MemberIndex};
use snapshotter::layer::Compression;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; ignore it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "export_cli: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> io::Result<()> {
    let usage = || {
        io::Error::other(
            "usage: export_cli generate DIR | apply BLOB TARGET [--no-sync] | export DIR gzip|zstd|none|zstdmt [--save BLOB] [--previous BLOB] [--change FILE | --change-one] [--threads N]",
        )
    };
    match args {
        [cmd, dir] if cmd == "generate" => support::generate(&PathBuf::from(dir)),
        [cmd, blob, target, rest @ ..] if cmd == "apply" => {
            let file = io::BufReader::with_capacity(1 << 20, std::fs::File::open(blob)?);
            let mut opts = ApplyOptions::new(WhiteoutMode::Delete);
            match rest {
                [] => {}
                [flag] if flag == "--no-sync" => opts.durability = Durability::NoSync,
                _ => return Err(usage()),
            }
            apply(file, &PathBuf::from(target), ApplyExpect::default(), &opts)
                .map_err(io::Error::other)?;
            Ok(())
        }
        [cmd, dir, codec, rest @ ..] if cmd == "export" => {
            let compression = match codec.as_str() {
                "gzip" => Compression::Gzip,
                "zstd" => Compression::Zstd,
                "none" => Compression::Uncompressed,
                "zstdmt" => return zstdmt(&PathBuf::from(dir)),
                _ => return Err(usage()),
            };
            let mut save = None;
            let mut previous = None;
            let mut change: Option<String> = None;
            let mut threads = None;
            let mut rest = rest.iter();
            while let Some(flag) = rest.next() {
                match flag.as_str() {
                    "--save" => save = Some(PathBuf::from(rest.next().ok_or_else(usage)?)),
                    "--previous" => previous = Some(PathBuf::from(rest.next().ok_or_else(usage)?)),
                    "--change-one" => change = Some(support::CHANGED_FILE.to_owned()),
                    "--change" => change = Some(rest.next().ok_or_else(usage)?.clone()),
                    "--threads" => {
                        let n = rest.next().ok_or_else(usage)?;
                        threads = Some(n.parse().map_err(|_| usage())?);
                    }
                    _ => return Err(usage()),
                }
            }
            let mut options = EncodeOptions::default();
            if let Some(threads) = threads {
                options = options.with_threads(threads);
            }
            if let Some(blob) = &previous {
                let json = fs_err::read(index_path(blob))?;
                let index: MemberIndex = serde_json::from_slice(&json).map_err(io::Error::other)?;
                options = options.with_previous(support::previous(blob, &index));
            }
            let root = PathBuf::from(dir);
            let changed = match &change {
                Some(rel) => Some(support::Changed::apply(&root, rel)?),
                None => None,
            };
            let layer = match &save {
                Some(blob) => {
                    let out = io::BufWriter::new(fs_err::File::create(blob)?);
                    let (mut out, layer) = support::export(&root, out, compression, options)?;
                    out.flush()?;
                    if let Some(index) = &layer.index {
                        let json = serde_json::to_vec(index).map_err(io::Error::other)?;
                        fs_err::write(index_path(blob), json)?;
                    }
                    layer
                }
                None => support::export(&root, io::sink(), compression, options)?.1,
            };
            drop(changed);
            writeln!(
                io::stdout(),
                "{} {} size={} tar={} members={} reused={} unread={} resumed={}",
                layer.digest,
                layer.diff_id,
                layer.size,
                layer.uncompressed_size,
                layer.stats.members,
                layer.stats.reused_members,
                layer.stats.unread_tar_bytes,
                layer.stats.resumed_tar_bytes,
            )
        }
        _ => Err(usage()),
    }
}

/// The alternative to kiln's zstd frames: one zstd stream, multithreaded by libzstd (zstdmt),
/// with the blob digest computed over its output as kiln does.
fn zstdmt(root: &std::path::Path) -> io::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let blob = snapshotter::DigestWriter::new(io::sink());
    let mut enc = zstd::stream::write::Encoder::new(blob, snapshotter::compress::ZSTD_LEVEL)?;
    enc.multithread(threads)?;
    let (enc, layer) = support::export(
        root,
        enc,
        Compression::Uncompressed,
        EncodeOptions::default(),
    )?;
    let (_, digest, size) = enc.finish()?.finish();
    writeln!(
        io::stdout(),
        "{digest} {} size={size} (zstdmt)",
        layer.diff_id
    )
}

fn index_path(blob: &std::path::Path) -> PathBuf {
    let mut p = blob.as_os_str().to_owned();
    p.push(".index.json");
    PathBuf::from(p)
}
