//! Layer export over a ~400 MB generated tree (see `support`): walk → tar → compress → digest
//! → sink, for gzip members, zstd frames and no compression, next to the same tree through
//! `tar -cf - | pigz -p 2 -6` in the same run; incremental re-export after one small file
//! changed; and kiln's zstd frames against one zstd stream compressed with zstdmt.
//!
//! Run: `cargo bench -p kiln-snapshotter --bench export` (figures in BENCHMARKS.md).

mod support;

use std::io::{self, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use snapshotter::compress::{EncodeOptions, RACY_MARGIN, ZSTD_LEVEL};
use snapshotter::layer::Compression;

fn tree_bytes(root: &std::path::Path) -> u64 {
    let (_, layer) = support::export(
        root,
        io::sink(),
        Compression::Uncompressed,
        EncodeOptions::default(),
    )
    .expect("export");
    layer.uncompressed_size
}

fn export(c: &mut Criterion) {
    let root = support::tree();
    let mut group = c.benchmark_group("export");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Bytes(tree_bytes(&root)));

    if Command::new("pigz").arg("--version").output().is_ok() {
        let pipeline = format!(
            "tar -cf - -C '{}' . | pigz -p 2 -6 > /dev/null",
            root.display()
        );
        group.bench_function("tar|pigz -p 2 -6", |b| {
            b.iter(|| {
                let status = Command::new("sh").arg("-c").arg(&pipeline).status();
                assert!(status.is_ok_and(|s| s.success()));
            })
        });
    } else {
        let _ = writeln!(io::stderr(), "SKIP pigz baseline: pigz is not installed");
    }

    for (name, compression) in [
        ("kiln gzip", Compression::Gzip),
        ("kiln zstd", Compression::Zstd),
        ("kiln uncompressed", Compression::Uncompressed),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                support::export(&root, io::sink(), compression, EncodeOptions::default())
                    .expect("export")
            })
        });
    }

    // Incremental re-export: before each timed export (untimed: wait out the racy margin so
    // that every file's identity is recorded, export the tree as the previous blob, change one
    // small file on disk), then the re-export alone is timed; the file is restored after.
    let dir = tempfile::tempdir().expect("temp dir");
    // Setup is ~6 s per iteration: one iteration per sample, 10 samples.
    group
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(1));
    for (name, compression) in [
        (
            "kiln gzip re-export, one small file changed",
            Compression::Gzip,
        ),
        (
            "kiln zstd re-export, one small file changed",
            Compression::Zstd,
        ),
    ] {
        let blob = dir.path().join(format!("{compression:?}.blob"));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    std::thread::sleep(RACY_MARGIN + Duration::from_millis(500));
                    let index = support::export_to_file(&root, &blob, compression);
                    let changed =
                        support::Changed::apply(&root, support::CHANGED_FILE).expect("change");
                    let options =
                        EncodeOptions::default().with_previous(support::previous(&blob, &index));
                    let start = Instant::now();
                    let (_, layer) = support::export(&root, io::sink(), compression, options)
                        .expect("re-export");
                    total += start.elapsed();
                    drop(changed);
                    assert!(layer.stats.reused_members + 2 >= layer.stats.members);
                }
                total
            })
        });
    }
    group
        .sampling_mode(SamplingMode::Auto)
        .measurement_time(Duration::from_secs(20));

    // The alternative to kiln's own frames: one zstd stream, multithreaded by libzstd.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    group.bench_function("zstdmt single stream (not kiln's format)", |b| {
        b.iter(|| {
            let mut enc = zstd::stream::write::Encoder::new(io::sink(), ZSTD_LEVEL).expect("zstd");
            enc.multithread(threads).expect("zstdmt");
            let (enc, layer) = support::export(
                &root,
                enc,
                Compression::Uncompressed,
                EncodeOptions::default(),
            )
            .expect("export");
            enc.finish().expect("zstd finish");
            layer
        })
    });
    group.finish();
}

criterion_group!(benches, export);
criterion_main!(benches);
