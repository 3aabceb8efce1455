//! The build cache end to end (DESIGN.md decision 4, issue [E] point 4), through the CLI on
//! real builds: what hits, what misses and why, and what prune frees.
//!
//! Base image: `busybox:local` (see `support::busybox_store`). Steps are told apart in the plain
//! progress output: `#N [i/n] TEXT` opens a step, `#N CACHED` or `#N DONE` closes it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::{self, Skip, skip_unless};
use crate::support::{Run, busybox_store, copy_tree, kiln, kiln_env, write_files};

struct Fixture {
    root: tempfile::TempDir,
    ctx: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Result<Self, Skip> {
        Ok(Self {
            root: busybox_store(&[])?,
            ctx: harness::tempdir(),
        })
    }

    fn build_in(&self, ctx: &Path, extra: &[&str]) -> Run {
        let ctx = ctx.to_str().unwrap();
        let mut args = vec!["build", "--progress=plain", "-t", "test:1"];
        args.extend_from_slice(extra);
        args.push(ctx);
        kiln(self.root.path(), &args).ok()
    }

    fn build(&self, extra: &[&str]) -> Run {
        self.build_in(self.ctx.path(), extra)
    }
}

/// Each step's text and whether it was `CACHED`, from plain progress.
pub(crate) fn steps(run: &Run) -> BTreeMap<String, bool> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for line in run.stderr.lines() {
        let Some((n, rest)) = line.split_once(' ') else {
            continue;
        };
        if !n.starts_with('#') {
            continue;
        }
        if let Some(text) = rest.strip_prefix('[') {
            // `[stage 2/5] RUN x` → `stage RUN x` (the numbers are the same in every build).
            let (label, text) = text.split_once("] ").unwrap_or(("", text));
            let stage = label.rsplit_once(' ').map_or("", |(s, _)| s);
            let name = format!("{stage} {text}").trim().to_owned();
            names.insert(n.to_owned(), name);
        } else if let Some(name) = names.get(n) {
            if rest == "CACHED" {
                out.insert(name.clone(), true);
            } else if rest.starts_with("DONE") {
                out.insert(name.clone(), false);
            }
        }
    }
    out
}

/// The steps (of those that make layers) that ran, i.e. were not CACHED.
pub(crate) fn ran(run: &Run) -> Vec<String> {
    steps(run)
        .into_iter()
        .filter(|(name, cached)| {
            !cached
                && ["COPY", "RUN", "ADD", "WORKDIR"]
                    .iter()
                    .any(|k| name.contains(k))
        })
        .map(|(name, _)| name)
        .collect()
}

pub(crate) fn image_id(run: &Run) -> String {
    run.stdout.trim().to_owned()
}

const APP: &str = "FROM busybox:local
WORKDIR /app
COPY src/ ./src/
RUN cat src/*.txt > all.txt && head -c 16 /dev/urandom > stamp
COPY --chmod=0640 conf/ /etc/app/
RUN echo done > done.txt
";

fn app_context(dir: &Path) {
    write_files(
        dir,
        &[
            ("Dockerfile", APP),
            ("src/a.txt", "alpha\n"),
            ("src/b.txt", "beta\n"),
            ("src/sub/c.txt", "gamma\n"),
            ("conf/app.conf", "x=1\n"),
        ],
    );
}

#[test]
fn a_rebuild_with_nothing_changed_runs_nothing_and_gives_the_same_image() {
    let f = skip_unless!(Fixture::new());
    app_context(f.ctx.path());
    let first = f.build(&[]);
    assert_eq!(ran(&first).len(), 5, "{}", first.stderr);
    let again = f.build(&[]);
    assert!(ran(&again).is_empty(), "{}", again.stderr);
    // The RUN writes the time: only a cache hit gives the same layer, and the same dates.
    assert_eq!(image_id(&first), image_id(&again));
    for (name, cached) in steps(&again) {
        if name.starts_with("RUN") || name.starts_with("COPY") {
            assert!(cached, "{name} was not CACHED:\n{}", again.stderr);
        }
    }
}

#[test]
fn mtimes_owners_and_the_context_path_are_not_part_of_the_key() {
    let f = skip_unless!(Fixture::new());
    app_context(f.ctx.path());
    let first = f.build(&[]);
    // The same sources checked out elsewhere, later, by another owner (another CI runner).
    let elsewhere = harness::tempdir();
    let other = elsewhere.path().join("checkout");
    copy_tree(f.ctx.path(), &other);
    harness::run_ok(
        std::process::Command::new("touch")
            .args(["-d", "2001-02-03 04:05:06"])
            .arg(other.join("src/a.txt"))
            .arg(other.join("conf/app.conf")),
    );
    harness::run_ok(
        std::process::Command::new("chown")
            .args(["-R", "1234:1234"])
            .arg(&other),
    );
    let again = f.build_in(&other, &[]);
    assert!(ran(&again).is_empty(), "{}", again.stderr);
    assert_eq!(image_id(&first), image_id(&again));
}

#[test]
fn a_changed_file_reruns_its_copy_and_what_follows_and_says_why() {
    let f = skip_unless!(Fixture::new());
    app_context(f.ctx.path());
    f.build(&[]);
    write_files(f.ctx.path(), &[("src/sub/c.txt", "GAMMA\n")]);
    let run = f.build(&["--debug-cache"]);
    assert_eq!(
        ran(&run),
        [
            "COPY --chmod=0640 conf/ /etc/app/",
            "COPY src/ ./src/",
            "RUN cat src/*.txt > all.txt && head -c 16 /dev/urandom > stamp",
            "RUN echo done > done.txt",
        ],
        "{}",
        run.stderr
    );
    assert!(steps(&run)["WORKDIR /app"], "{}", run.stderr);
    assert!(
        run.stderr.contains("changed: inputs: sub/c.txt changed"),
        "the miss names the file:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("changed: parent: sha256:"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_mode_change_misses_unless_chmod_sets_the_mode() {
    let f = skip_unless!(Fixture::new());
    app_context(f.ctx.path());
    f.build(&[]);
    let chmod = |path: &str, mode: &str| {
        harness::run_ok(
            std::process::Command::new("chmod")
                .arg(mode)
                .arg(f.ctx.path().join(path)),
        )
    };
    // conf/ is copied with --chmod=0640: its files' own modes do not reach the image.
    chmod("conf/app.conf", "0600");
    assert!(ran(&f.build(&[])).is_empty());
    // src/ is copied with the files' modes.
    chmod("src/a.txt", "0755");
    let run = f.build(&[]);
    assert!(
        ran(&run).contains(&"COPY src/ ./src/".to_owned()),
        "{}",
        run.stderr
    );
}

#[test]
fn no_cache_reruns_everything_and_no_cache_filter_one_stage() {
    let f = skip_unless!(Fixture::new());
    write_files(
        f.ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local AS one\nRUN head -c 16 /dev/urandom > /one\n\
                 FROM busybox:local AS two\nRUN head -c 16 /dev/urandom > /two\n\
                 FROM busybox:local\nCOPY --from=one /one /one\nCOPY --from=two /two /two\n",
        )],
    );
    let first = f.build(&[]);
    let all = f.build(&["--no-cache"]);
    assert_eq!(ran(&all).len(), 4, "{}", all.stderr);
    assert_ne!(image_id(&first), image_id(&all));
    let filtered = f.build(&["--no-cache-filter", "two"]);
    // Stage `two` runs again; `one` is cached, and so is nothing after two's new layer.
    assert_eq!(
        ran(&filtered),
        [
            "stage-2 COPY --from=two /two /two",
            "two RUN head -c 16 /dev/urandom > /two"
        ],
        "{}",
        filtered.stderr
    );
    assert!(steps(&filtered)["one RUN head -c 16 /dev/urandom > /one"]);
}

#[test]
fn a_miss_in_one_branch_leaves_the_others_cached() {
    let f = skip_unless!(Fixture::new());
    write_files(
        f.ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM busybox:local AS a\nCOPY a.txt /a.txt\nRUN cat /a.txt > /a.out\n\
                 FROM busybox:local AS b\nCOPY b.txt /b.txt\nRUN cat /b.txt > /b.out\n\
                 FROM busybox:local\nCOPY --from=a /a.out /\nCOPY --from=b /b.out /\n",
            ),
            ("a.txt", "a1\n"),
            ("b.txt", "b1\n"),
        ],
    );
    f.build(&[]);
    write_files(f.ctx.path(), &[("a.txt", "a2\n")]);
    let run = f.build(&[]);
    let s = steps(&run);
    assert!(
        s["b COPY b.txt /b.txt"] && s["b RUN cat /b.txt > /b.out"],
        "{}",
        run.stderr
    );
    assert!(
        !s["a COPY a.txt /a.txt"] && !s["a RUN cat /a.txt > /a.out"],
        "{}",
        run.stderr
    );
}

/// A tmpfs mounted `strictatime`, where every read of a file moves its atime (and nothing
/// else: the stat cache's identity is unchanged), so a rebuild can be shown not to read an
/// unchanged context. Unmounted on drop.
struct AtimeDir {
    dir: tempfile::TempDir,
}

impl AtimeDir {
    fn new() -> Self {
        let dir = harness::tempdir();
        harness::run_ok(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "strictatime,size=64m", "kiln-it-ctx"])
                .arg(dir.path()),
        );
        Self { dir }
    }
}

impl Drop for AtimeDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn an_unchanged_context_is_recognised_without_reading_it() {
    let f = skip_unless!(Fixture::new());
    let ctx = AtimeDir::new();
    let big = "x".repeat(64 * 1024);
    write_files(
        ctx.dir.path(),
        &[
            ("Dockerfile", "FROM busybox:local\nCOPY . /ctx/\n"),
            ("data/one.bin", &big),
            ("data/two.bin", &big),
        ],
    );
    let file = ctx.dir.path().join("data/one.bin");
    let atime = || {
        use std::os::unix::fs::MetadataExt;
        let m = fs_err::metadata(&file).unwrap();
        (m.atime(), m.atime_nsec())
    };
    // The stat cache trusts records of files changed at least a second before it was saved.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = f.build_in(ctx.dir.path(), &[]);
    assert_eq!(ran(&first).len(), 1);
    let read_at = atime();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = f.build_in(ctx.dir.path(), &[]);
    assert!(ran(&again).is_empty(), "{}", again.stderr);
    assert_eq!(
        atime(),
        read_at,
        "the rebuild read an unchanged context file"
    );
    // The check can fail: a read is seen.
    let _ = fs_err::read(&file).unwrap();
    assert_ne!(atime(), read_at);
    // A change of content at the same size is seen.
    write_files(ctx.dir.path(), &[("data/one.bin", &"y".repeat(64 * 1024))]);
    let changed = f.build_in(ctx.dir.path(), &[]);
    assert_eq!(ran(&changed), ["COPY . /ctx/"], "{}", changed.stderr);
}

/// The selection summaries (`cache::stat`): once a no-op rebuild has recorded that `COPY src/`
/// had a given fingerprint, every kind of change to what it copies still misses, and what the
/// image does not depend on (an owner, an ignored file) still hits. One context per change, all
/// summarised after the same wait (a summary is recorded only for changes a second old).
#[test]
fn every_change_to_a_summarised_copy_source_misses() {
    use std::os::unix::fs::symlink;
    type Change = fn(&Path);
    let f = skip_unless!(Fixture::new());
    let changes: &[(&str, Change, bool)] = &[
        ("nothing", |_| {}, false),
        (
            "content at the same size",
            |d| write_files(d, &[("src/sub/b.txt", "BETA\n")]),
            true,
        ),
        (
            "content with the mtime put back",
            |d| {
                let file = d.join("src/a.txt");
                let before = fs_err::metadata(&file).unwrap().modified().unwrap();
                write_files(d, &[("src/a.txt", "ALPHA\n")]);
                fs_err::File::options()
                    .write(true)
                    .open(&file)
                    .unwrap()
                    .set_modified(before)
                    .unwrap();
            },
            true,
        ),
        (
            "mode",
            |d| {
                harness::run_ok(
                    std::process::Command::new("chmod")
                        .arg("0600")
                        .arg(d.join("src/a.txt")),
                );
            },
            true,
        ),
        (
            "rename",
            |d| fs_err::rename(d.join("src/sub/b.txt"), d.join("src/sub/B.txt")).unwrap(),
            true,
        ),
        (
            "added file",
            |d| write_files(d, &[("src/sub/new.txt", "")]),
            true,
        ),
        (
            "removed file",
            |d| fs_err::remove_file(d.join("src/sub/b.txt")).unwrap(),
            true,
        ),
        (
            "symlink target",
            |d| {
                fs_err::remove_file(d.join("src/link")).unwrap();
                symlink("sub/b.txt", d.join("src/link")).unwrap();
            },
            true,
        ),
        (
            "owner",
            |d| {
                harness::run_ok(
                    std::process::Command::new("chown")
                        .arg("1234:1234")
                        .arg(d.join("src/a.txt")),
                );
            },
            false,
        ),
        (
            "ignored file",
            |d| write_files(d, &[("src/debug.log", "more\n")]),
            false,
        ),
    ];
    let contexts: Vec<tempfile::TempDir> = changes
        .iter()
        .map(|_| {
            let ctx = harness::tempdir();
            write_files(
                ctx.path(),
                &[
                    ("Dockerfile", "FROM busybox:local\nCOPY src/ /src/\n"),
                    (".dockerignore", "**/*.log\n"),
                    ("src/a.txt", "alpha\n"),
                    ("src/sub/b.txt", "beta\n"),
                    ("src/debug.log", "log\n"),
                ],
            );
            symlink("a.txt", ctx.path().join("src/link")).unwrap();
            ctx
        })
        .collect();
    let ids: Vec<String> = contexts
        .iter()
        .map(|c| image_id(&f.build_in(c.path(), &[])))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for (ctx, id) in contexts.iter().zip(&ids) {
        let again = f.build_in(ctx.path(), &[]);
        assert!(ran(&again).is_empty(), "{}", again.stderr);
        assert_eq!(&image_id(&again), id);
    }
    let summaries = fs_err::read_dir(f.root.path().join("cache/build/stat"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sel"))
        .flat_map(|dir| fs_err::read_dir(dir).unwrap())
        .count();
    assert_eq!(summaries, contexts.len(), "one summary per context");
    for ((what, change, misses), (ctx, id)) in changes.iter().zip(contexts.iter().zip(&ids)) {
        change(ctx.path());
        let run = f.build_in(ctx.path(), &[]);
        if *misses {
            assert_eq!(ran(&run), ["COPY src/ /src/"], "{what}:\n{}", run.stderr);
            assert_ne!(&image_id(&run), id, "{what}");
        } else {
            assert!(ran(&run).is_empty(), "{what}:\n{}", run.stderr);
            assert_eq!(&image_id(&run), id, "{what}");
        }
    }
}

#[test]
fn a_hit_needs_its_layer_and_prune_frees_what_only_the_cache_holds() {
    let f = skip_unless!(Fixture::new());
    write_files(
        f.ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local AS build\nRUN head -c 300000 /dev/urandom > /blob && echo more > /more\n\
                 FROM busybox:local\nCOPY --from=build /blob /blob\n",
        )],
    );
    let first = f.build(&[]);
    let blobs = |root: &Path| fs_err::read_dir(root.join("blobs/sha256")).unwrap().count();
    let before = blobs(f.root.path());
    // The build stage's layer is only in the cache (the image holds a copy of one of its
    // files, in a layer of its own): dangling.
    let pruned = kiln(f.root.path(), &["builder", "prune", "-f"]).ok();
    assert!(
        pruned.stdout.starts_with("Total reclaimed space: "),
        "{}",
        pruned.stdout
    );
    assert!(pruned.stderr.contains("1 layer(s)"), "{}", pruned.stderr);
    assert_eq!(blobs(f.root.path()), before - 1);
    // The image still runs from the cache where it can: the RUN's layer is gone, so the RUN
    // runs again; the final COPY gets a new input and runs too.
    let again = f.build(&["--debug-cache"]);
    assert_eq!(ran(&again).len(), 2, "{}", again.stderr);
    assert_ne!(image_id(&first), image_id(&again));
    // --all removes every record, and what only records used: nothing is cached afterwards.
    kiln(f.root.path(), &["builder", "prune", "-a", "-f"]).ok();
    for dir in ["keys", "copies", "sources", "steps", "created"] {
        let path = f.root.path().join("cache/build").join(dir);
        let left = fs_err::read_dir(&path).map_or(0, |d| d.count());
        assert_eq!(left, 0, "{} still holds {left} file(s)", path.display());
    }
    assert_eq!(ran(&f.build(&[])).len(), 2);
    // --keep-storage keeps what fits, least recently used going first.
    let keep = kiln(
        f.root.path(),
        &["builder", "prune", "-f", "--keep-storage", "10GB"],
    )
    .ok();
    assert!(
        keep.stderr.contains("Deleted 0 cache record(s)"),
        "{}",
        keep.stderr
    );
    kiln(
        f.root.path(),
        &["builder", "prune", "-f", "--keep-storage", "0"],
    )
    .ok();
    let after = f.build(&[]);
    assert!(!steps(&after)["build RUN head -c 300000 /dev/urandom > /blob && echo more > /more"]);
    // The store is still sound: the image is there and its blobs too.
    kiln(f.root.path(), &["image", "inspect", "test:1"]).ok();
}

#[test]
fn the_cache_is_used_with_source_date_epoch_and_stays_reproducible() {
    let f = skip_unless!(Fixture::new());
    app_context(f.ctx.path());
    let env = [("SOURCE_DATE_EPOCH", "1700000000")];
    let ctx = f.ctx.path().to_str().unwrap();
    let build = || {
        kiln_env(
            f.root.path(),
            &["build", "--progress=plain", "-t", "test:1", ctx],
            &env,
        )
        .ok()
    };
    let first = build();
    let again = build();
    assert!(ran(&again).is_empty(), "{}", again.stderr);
    assert_eq!(image_id(&first), image_id(&again));
}

#[test]
fn dates_of_an_earlier_undated_build_do_not_leak_into_an_epoch_build() {
    let f = skip_unless!(Fixture::new());
    // No layer of its own: the same image content with and without the epoch.
    write_files(
        f.ctx.path(),
        &[("Dockerfile", "FROM busybox:local\nENV A=1\nCMD [\"sh\"]\n")],
    );
    let ctx = f.ctx.path().to_str().unwrap();
    kiln(f.root.path(), &["build", "-q", "-t", "undated:1", ctx]).ok();
    let undated = crate::support::config_of(f.root.path(), "undated:1");
    assert_ne!(undated["created"], "2023-11-14T22:13:20Z");
    kiln_env(
        f.root.path(),
        &["build", "-q", "-t", "dated:1", ctx],
        // Not the base image's epoch, so that only this build's entries carry it.
        &[("SOURCE_DATE_EPOCH", "1800000000")],
    )
    .ok();
    let config = crate::support::config_of(f.root.path(), "dated:1");
    assert_eq!(config["created"], "2027-01-15T08:00:00Z");
    let history = config["history"].as_array().unwrap();
    let ours = &history[history.len() - 2..];
    for h in ours {
        assert_eq!(h["created"], "2027-01-15T08:00:00Z", "{h}");
    }
    // And an undated rebuild keeps the first undated build's date (same image ID).
    let again = kiln(f.root.path(), &["build", "-q", "-t", "undated:2", ctx]).ok();
    assert_eq!(
        crate::support::config_of(f.root.path(), "undated:2")["created"],
        undated["created"]
    );
    assert!(again.stdout.starts_with("sha256:"));
}

#[test]
fn pull_looks_the_base_up_again_and_a_changed_base_misses() {
    let reg = skip_unless!(harness::Registry::start());
    let host = reg.host_port();
    let base = format!("{host}/base:1");
    // Another machine pushes the base image, twice with different content.
    let publisher = harness::tempdir();
    let push_base = |content: &str| {
        let ctx = harness::tempdir();
        write_files(
            ctx.path(),
            &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", content)],
        );
        kiln(
            publisher.path(),
            &[
                "build",
                "-q",
                "--push",
                "-t",
                &base,
                ctx.path().to_str().unwrap(),
            ],
        )
        .ok();
        crate::support::manifest_layers(publisher.path(), &base)[0].clone()
    };
    let first_base = push_base("one");
    let root = harness::tempdir();
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", &format!("FROM {base}\nCOPY g /g\n")),
            ("g", "app"),
        ],
    );
    let ctx = ctx.path().to_str().unwrap();
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--progress=plain", "-t", "test:1"];
        args.extend_from_slice(extra);
        args.push(ctx);
        kiln(root.path(), &args).ok()
    };
    let first = build(&[]);
    assert_eq!(
        crate::support::manifest_layers(root.path(), "test:1")[0],
        first_base
    );
    let second_base = push_base("two");
    assert_ne!(first_base, second_base);
    // Without --pull the local base is used: everything is cached.
    let again = build(&[]);
    assert!(ran(&again).is_empty(), "{}", again.stderr);
    assert_eq!(image_id(&first), image_id(&again));
    // With --pull the registry's current base is fetched, and the COPY on it runs again.
    let pulled = build(&["--pull"]);
    assert_eq!(ran(&pulled), ["COPY g /g"], "{}", pulled.stderr);
    assert_eq!(
        crate::support::manifest_layers(root.path(), "test:1")[0],
        second_base
    );
    // Pulling again when nothing changed keeps the cache.
    let same = build(&["--pull"]);
    assert!(ran(&same).is_empty(), "{}", same.stderr);
    assert_eq!(image_id(&pulled), image_id(&same));
}

/// `(dev, ino)` of every file named `name` in the store's snapshot directories.
fn snapshot_inodes(root: &Path, name: &str) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let out = harness::run_ok(
        std::process::Command::new("find")
            .arg(root.join("snapshots"))
            .args(["-name", name, "-type", "f"]),
    );
    let mut ids: Vec<(u64, u64)> = out
        .lines()
        .map(|p| {
            let m = fs_err::metadata(p).unwrap();
            (m.dev(), m.ino())
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn a_copy_run_again_links_its_unchanged_files_and_gives_the_layer_a_fresh_store_gives() {
    let f = skip_unless!(Fixture::new());
    copy_data_context(&f, 50, |i| format!("file {i}\n"));
    // Sources changed less than a second before a copy are never linked from it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    f.build(&[]);
    write_files(f.ctx.path(), &[("data/f000.txt", "changed\n")]);
    harness::run_ok(
        std::process::Command::new("chmod")
            .arg("0600")
            .arg(f.ctx.path().join("data/f002.txt")),
    );
    harness::run_ok(
        std::process::Command::new("touch")
            .args(["-d", "2020-01-01"])
            .arg(f.ctx.path().join("data/f003.txt")),
    );
    // A file added and one removed.
    write_files(f.ctx.path(), &[("data/new.txt", "new\n")]);
    fs_err::remove_file(f.ctx.path().join("data/f004.txt")).unwrap();
    let run = f.build(&[]);
    assert_eq!(ran(&run), ["COPY data/ /srv/data/"], "{}", run.stderr);
    let linked = snapshot_inodes(f.root.path(), "f001.txt");
    assert_eq!(linked.len(), 2, "two snapshots hold f001.txt: {linked:?}");
    assert_eq!(
        linked[0], linked[1],
        "the unchanged file is one inode in both"
    );
    for changed in ["f000.txt", "f002.txt", "f003.txt"] {
        let ids = snapshot_inodes(f.root.path(), changed);
        assert_eq!(ids.len(), 2, "{changed}");
        assert_ne!(ids[0], ids[1], "{changed} was written again");
    }
    // Byte for byte what a store that never saw the earlier build makes.
    skip_unless!(assert_layers_of_a_fresh_store(&f));
}

/// A context of `n` files `data/fNNN.txt` (with `content(i)`) and a Dockerfile copying them.
fn copy_data_context(f: &Fixture, n: usize, content: impl Fn(usize) -> String) {
    let mut files: Vec<(String, String)> = (0..n)
        .map(|i| (format!("data/f{i:03}.txt"), content(i)))
        .collect();
    files.push((
        "Dockerfile".into(),
        "FROM busybox:local\nCOPY data/ /srv/data/\n".into(),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    write_files(f.ctx.path(), &refs);
}

/// The layers of `test:1` are those a store that never saw an earlier build makes of the
/// context.
fn assert_layers_of_a_fresh_store(f: &Fixture) -> Result<(), Skip> {
    let fresh = busybox_store(&[])?;
    let ctx = f.ctx.path().to_str().unwrap();
    kiln(fresh.path(), &["build", "-q", "-t", "test:1", ctx]).ok();
    let layers = |root: &Path| crate::support::manifest_layers(root, "test:1");
    assert_eq!(layers(f.root.path()), layers(fresh.path()));
    crate::support::assert_blobs_match_their_names(f.root.path());
    crate::support::assert_blobs_match_their_names(fresh.path());
    Ok(())
}

/// `(atime s, atime ns)` of a file.
fn atime_of(path: &Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = fs_err::metadata(path).unwrap();
    (m.atime(), m.atime_nsec())
}

/// The re-export of a COPY run again: the files it linked unchanged from the earlier snapshot
/// are keyed by their sources' identities, so the layer's members that hold only them are taken
/// from the earlier blob without reading the files (seen by their atime: with the default
/// `relatime`, a read after the link moved the ctime would move the atime), and the layer is
/// still the one a fresh store makes.
#[test]
fn a_copy_run_again_takes_the_unchanged_part_of_its_layer_without_reading_it() {
    let f = skip_unless!(Fixture::new());
    let body = "y".repeat(32 * 1024);
    copy_data_context(&f, 40, |i| format!("{i}{body}"));
    // Identities key members only once their ctime is older than the encoder's racy margin.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    f.build(&[]);
    let first = snapshot_paths(f.root.path(), "f001.txt");
    assert_eq!(first.len(), 1, "{first:?}");
    let before = atime_of(&first[0]);
    // The last file changes in place (the directory keeps its mtime): everything before it is
    // the same prefix of the layer.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_files(f.ctx.path(), &[("data/f039.txt", "changed")]);
    let run = f.build(&[]);
    assert_eq!(ran(&run), ["COPY data/ /srv/data/"], "{}", run.stderr);
    let linked = snapshot_inodes(f.root.path(), "f001.txt");
    assert_eq!(linked.len(), 2, "{linked:?}");
    assert_eq!(linked[0], linked[1], "f001.txt was linked, not copied");
    assert_eq!(
        atime_of(&first[0]),
        before,
        "the re-export read a file whose member it could take from the earlier blob"
    );
    // The check can fail: here a read moves the atime (the ctime moved when it was linked).
    let _ = fs_err::read(&first[0]).unwrap();
    skip_unless!(harness::require(
        atime_of(&first[0]) != before,
        "the store's filesystem does not update atimes (noatime)"
    ));
    skip_unless!(assert_layers_of_a_fresh_store(&f));
}

/// Every file named `name` in the store's snapshot directories.
fn snapshot_paths(root: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let out = harness::run_ok(
        std::process::Command::new("find")
            .arg(root.join("snapshots"))
            .args(["-name", name, "-type", "f"]),
    );
    out.lines().map(std::path::PathBuf::from).collect()
}
