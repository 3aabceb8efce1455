//! The overlay differ on a step that changed one file on top of a large lower layer (issue [C]
//! item 3): under 20 ms, and the same for 1,000 and 100,000 lower files, because only the
//! upperdir is walked. Real overlay mounts; needs root (prints `SKIP` otherwise).
//!
//! `keep` emits the upperdir as it is; `drop_unchanged` also looks each upperdir path up in
//! the lower (BuildKit's behaviour). Both write a gzip layer to a sink, so the figures include
//! tar encoding, compression and digests; `scan_only` is the upperdir walk alone.
#![allow(clippy::print_stderr)]

use std::ffi::CString;
use std::hint::black_box;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rustix::mount::{MountFlags, UnmountFlags};
use snapshotter::diff::{CopyUps, DiffOptions, REQUIRED_MOUNT_OPTIONS, UpperDiff, diff_upperdir};
use snapshotter::layer::{Compression, LayerWriter};

const DIRS: usize = 100;

/// A lower of `files` files in [`DIRS`] directories, and the upperdir of one step that
/// appended to one of them (already unmounted).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(files: usize) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let fx = Self { dir };
        for d in ["lower", "upper", "work", "merged"] {
            fs_err::create_dir(fx.path(d)).map_err(|e| e.to_string())?;
        }
        for i in 0..files {
            let d = fx.path("lower").join(format!("d{:03}", i % DIRS));
            if i < DIRS {
                fs_err::create_dir(&d).map_err(|e| e.to_string())?;
            }
            fs_err::write(d.join(format!("f{i:06}")), b"lower content\n")
                .map_err(|e| e.to_string())?;
        }
        let data = CString::new(format!(
            "lowerdir={},upperdir={},workdir={},{REQUIRED_MOUNT_OPTIONS}",
            fx.path("lower").display(),
            fx.path("upper").display(),
            fx.path("work").display()
        ))
        .map_err(|e| e.to_string())?;
        rustix::mount::mount(
            "overlay",
            fx.path("merged"),
            "overlay",
            MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|e| format!("cannot mount overlayfs: {e}"))?;
        let changed = fx.path("merged").join("d042").join("f000042");
        let result = fs_err::OpenOptions::new()
            .append(true)
            .open(&changed)
            .and_then(|mut f| f.write_all(b"changed by the step\n"));
        rustix::mount::unmount(fx.path("merged"), UnmountFlags::empty())
            .or_else(|_| rustix::mount::unmount(fx.path("merged"), UnmountFlags::DETACH))
            .map_err(|e| format!("cannot unmount: {e}"))?;
        result.map_err(|e| e.to_string())?;
        // Let writeback of the fresh lower finish before anything is measured.
        rustix::fs::sync();
        Ok(fx)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn diff(upper: &Path, options: &DiffOptions<'_>) {
    let mut layer = LayerWriter::new(io::sink(), Compression::Gzip);
    let summary = diff_upperdir(upper, options, &mut layer).expect("diff");
    assert_eq!(summary.entries, 2, "d042/ and d042/f000042");
    black_box(layer.finish().expect("finish"));
}

fn bench(c: &mut Criterion) {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP diff bench: needs root to mount overlayfs");
        return;
    }
    let mut group = c.benchmark_group("diff/one_changed_file");
    for files in [1_000, 100_000] {
        let fx = match Fixture::new(files) {
            Ok(fx) => fx,
            Err(reason) => {
                eprintln!("SKIP diff bench: {reason}");
                return;
            }
        };
        let upper = fx.path("upper");
        let lower = fx.path("lower");
        group.bench_with_input(BenchmarkId::new("scan_only", files), &upper, |b, upper| {
            b.iter(|| black_box(UpperDiff::scan(upper, &DiffOptions::default()).expect("scan")))
        });
        group.bench_with_input(BenchmarkId::new("keep", files), &upper, |b, upper| {
            b.iter(|| diff(upper, &DiffOptions::default()))
        });
        let drop_unchanged = DiffOptions {
            copy_ups: CopyUps::DropUnchanged { lower: &lower },
            ..DiffOptions::default()
        };
        group.bench_with_input(
            BenchmarkId::new("drop_unchanged", files),
            &upper,
            |b, upper| b.iter(|| diff(upper, &drop_unchanged)),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
