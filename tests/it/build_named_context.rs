//! `--build-context NAME=DIR`, end to end: a local directory as a named context, used by
//! `COPY --from`, `RUN --mount from=`, `FROM`, and in place of a stage of the same name, as
//! BuildKit uses it (a local source, seen through its own `.dockerignore`, entries 0:0).
//!
//! Base image: `busybox:local` (see `support::busybox_store`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::Value;

use crate::harness::{self, Skip, skip_unless};
use crate::support::{
    Run, busybox_store, config_of, copy_tree, kiln_env, layer_entries, manifest_layers, write_files,
};

/// A store with `busybox:local`, a main context and a directory for the named context.
struct Fixture {
    root: tempfile::TempDir,
    ctx: tempfile::TempDir,
    deps: tempfile::TempDir,
    driver: &'static str,
}

impl Fixture {
    fn new(driver: &'static str) -> Result<Self, Skip> {
        Ok(Self {
            root: busybox_store(&[("KILN_STORAGE_DRIVER", driver)])?,
            ctx: harness::tempdir(),
            deps: harness::tempdir(),
            driver,
        })
    }

    fn deps(&self) -> &Path {
        self.deps.path()
    }

    /// `kiln build --progress=plain -t test:1 --build-context deps=<deps> EXTRA <ctx>` with
    /// `dockerfile` written into the main context.
    fn build(&self, dockerfile: &str, extra: &[&str]) -> Run {
        write_files(self.ctx.path(), &[("Dockerfile", dockerfile)]);
        let deps = format!("deps={}", self.deps().display());
        let mut args = vec![
            "build",
            "--progress=plain",
            "-t",
            "test:1",
            "--build-context",
            &deps,
        ];
        args.extend_from_slice(extra);
        args.push(self.ctx.path().to_str().unwrap());
        kiln_env(
            self.root.path(),
            &args,
            &[
                ("KILN_STORAGE_DRIVER", self.driver),
                ("SOURCE_DATE_EPOCH", "1700000000"),
            ],
        )
    }

    /// `(path, mode & 0o7777, uid, gid)` of the entries of layer `index` (negative: from the
    /// top) of `test:1`.
    fn layer(&self, index: isize) -> Vec<(String, u32, u64, u64)> {
        let layers = manifest_layers(self.root.path(), "test:1");
        let i = if index < 0 {
            layers.len() - index.unsigned_abs()
        } else {
            index.unsigned_abs()
        };
        layer_entries(self.root.path(), &layers[i])
            .into_iter()
            .map(|(path, _, mode, uid, gid)| (path, mode & 0o7777, uid, gid))
            .collect()
    }
}

/// The lines RUN steps printed, from plain progress (`#N 0.123 text`).
fn step_output(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.strip_prefix('#')?.split_once(' ')?;
            let (time, text) = rest.split_once(' ').unwrap_or((rest, ""));
            time.parse::<f64>().ok()?;
            Some(text.to_owned())
        })
        .collect()
}

/// The named directory: files with non-root owners and several modes, a `.dockerignore` that
/// leaves out `excluded.txt`, and the same names the main context's `.dockerignore` excludes.
fn fill_deps(dir: &Path) {
    write_files(
        dir,
        &[
            (".dockerignore", "excluded.txt\n"),
            ("excluded.txt", "never copied"),
            (
                "main-ignores-this",
                "kept: only the directory's own ignore file applies",
            ),
            ("bin/tool", "#!/bin/sh\necho tool\n"),
            ("data/hello", "content-of-hello\n"),
        ],
    );
    let chmod = |p: &str, mode: u32| {
        fs_err::set_permissions(dir.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod("bin/tool", 0o750);
    chmod("data", 0o700);
    std::os::unix::fs::chown(dir.join("data/hello"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(dir.join("bin"), Some(42), Some(42)).unwrap();
}

#[test]
fn copy_from_a_directory_context_reads_it_like_the_main_context() {
    let f = skip_unless!(Fixture::new("overlay"));
    fill_deps(f.deps());
    write_files(f.ctx.path(), &[(".dockerignore", "main-ignores-this\n")]);
    f.build(
        "FROM busybox:local\n\
         COPY --from=deps / /deps/\n\
         COPY --from=deps --chown=7:8 data/hello /chowned\n",
        &[],
    )
    .ok();
    let mut copied = f.layer(-2);
    copied.sort();
    assert_eq!(
        copied,
        [
            ("deps/".to_owned(), 0o755, 0, 0),
            ("deps/.dockerignore".to_owned(), 0o644, 0, 0),
            ("deps/bin/".to_owned(), 0o755, 0, 0),
            ("deps/bin/tool".to_owned(), 0o750, 0, 0),
            ("deps/data/".to_owned(), 0o700, 0, 0),
            ("deps/data/hello".to_owned(), 0o644, 0, 0),
            ("deps/main-ignores-this".to_owned(), 0o644, 0, 0),
        ],
        "owners 0:0, modes kept, the directory's .dockerignore applied, not the main one"
    );
    assert_eq!(f.layer(-1), [("chowned".to_owned(), 0o644, 7, 8)]);

    // A source the directory's ignore file excludes is not there; neither is a missing one.
    for (source, message) in [
        ("excluded.txt", "excluded by .dockerignore:1"),
        ("missing.txt", "\"missing.txt\": not found"),
    ] {
        let run = f
            .build(
                &format!("FROM busybox:local\nCOPY --from=deps {source} /x\n"),
                &[],
            )
            .fails_with(1);
        assert!(run.stderr.contains(message), "{source}: {}", run.stderr);
    }
}

#[test]
fn run_mount_from_a_directory_context_binds_it() {
    let f = skip_unless!(Fixture::new("overlay"));
    fill_deps(f.deps());
    let out = f
        .build(
            concat!(
                "FROM busybox:local\n",
                "RUN --mount=type=bind,from=deps,target=/mnt cat /mnt/data/hello",
                " && ls -a /mnt | sed s/^/listed:/",
                " && (touch /mnt/new 2>/dev/null && echo mount-is-writable",
                " || echo mount-is-readonly)\n",
                "RUN --mount=type=bind,from=deps,source=data,target=/d,rw echo changed > /d/hello",
                " && touch /d/new && cat /d/hello && ls /d | sed s/^/rw-listed:/\n",
            ),
            &[],
        )
        .ok();
    let printed = step_output(&out.stderr);
    assert!(
        printed.contains(&"content-of-hello".to_owned()),
        "{}",
        out.stderr
    );
    let listed: Vec<&str> = printed
        .iter()
        .filter_map(|l| l.strip_prefix("listed:"))
        .collect();
    assert_eq!(
        listed,
        [
            ".",
            "..",
            ".dockerignore",
            "bin",
            "data",
            "main-ignores-this"
        ],
        "the mount shows the directory as its .dockerignore leaves it"
    );
    assert!(
        printed.contains(&"mount-is-readonly".to_owned()),
        "{}",
        out.stderr
    );
    // rw: the step sees its writes, the directory on the host does not get them.
    assert!(printed.contains(&"changed".to_owned()), "{}", out.stderr);
    let rw_listed: Vec<&str> = printed
        .iter()
        .filter_map(|l| l.strip_prefix("rw-listed:"))
        .collect();
    assert_eq!(rw_listed, ["hello", "new"]);
    assert_eq!(
        fs_err::read_to_string(f.deps().join("data/hello")).unwrap(),
        "content-of-hello\n"
    );
    assert!(!f.deps().join("data/new").exists());
    assert!(!f.deps().join("new").exists());
}

#[test]
fn from_a_directory_context_is_a_one_layer_image_of_it() {
    for driver in ["overlay", "copy"] {
        let f = skip_unless!(Fixture::new(driver));
        let rootfs = skip_unless!(harness::rootfs::busybox_rootfs());
        // The directory is a whole busybox root filesystem, so the stage can RUN.
        fs_err::remove_dir(f.deps()).unwrap();
        copy_tree(rootfs.path(), f.deps());
        write_files(
            f.deps(),
            &[
                ("hello", "hello-from-the-directory\n"),
                (".dockerignore", "skipped\n"),
            ],
        );
        write_files(f.deps(), &[("skipped", "left out")]);
        let out = f
            .build(
                "FROM deps\nRUN cat /hello && ls -ln /home | sed s/^/home:/ && touch /ran\n",
                &[],
            )
            .ok();
        let printed = step_output(&out.stderr);
        assert!(
            printed.contains(&"hello-from-the-directory".to_owned()),
            "{driver}: {}",
            out.stderr
        );
        // /home/app is 1000:1000 on the host; the image has it 0:0.
        let home: Vec<&str> = printed
            .iter()
            .filter_map(|l| l.strip_prefix("home:"))
            .filter(|l| l.contains("app"))
            .collect();
        assert_eq!(home.len(), 1, "{printed:?}");
        assert!(
            home[0].split_whitespace().nth(2) == Some("0")
                && home[0].split_whitespace().nth(3) == Some("0"),
            "{driver}: {home:?}"
        );

        let layers = manifest_layers(f.root.path(), "test:1");
        assert_eq!(layers.len(), 2, "{driver}: the directory, then the RUN");
        let dir_layer = f.layer(0);
        let paths: Vec<&str> = dir_layer.iter().map(|e| e.0.as_str()).collect();
        assert!(paths.contains(&"hello"), "{driver}: {paths:?}");
        assert!(paths.contains(&"bin/busybox"), "{driver}: {paths:?}");
        assert!(!paths.contains(&"skipped"), "{driver}: {paths:?}");
        assert!(
            dir_layer.iter().all(|e| e.2 == 0 && e.3 == 0),
            "{driver}: every entry is 0:0"
        );
        assert!(
            dir_layer.contains(&("tmp/".to_owned(), 0o1777, 0, 0)),
            "{driver}: modes are kept"
        );

        // The config is that of FROM scratch; history has the directory's layer first.
        let config = config_of(f.root.path(), "test:1");
        assert_eq!(
            config["config"]["Env"],
            serde_json::json!([
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ])
        );
        let history = config["history"].as_array().unwrap();
        assert_eq!(history.len(), 2, "{driver}: {history:?}");
        assert_eq!(
            history[0]["created_by"],
            Value::from("local source for context:deps")
        );
        assert_eq!(
            history[0]["comment"],
            Value::from("buildkit.exporter.image.v0")
        );
        assert_eq!(history[0].get("empty_layer"), None);
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn a_directory_context_replaces_the_stage_it_is_named_after() {
    let f = skip_unless!(Fixture::new("overlay"));
    fill_deps(f.deps());
    // `deps` the stage would fail; the context replaces it, FROM and steps alike, and so it
    // never runs (nor does `broken`, which only it needed).
    f.build(
        "FROM busybox:local AS broken\n\
         RUN exit 1\n\
         FROM broken AS deps\n\
         RUN exit 2\n\
         FROM busybox:local\n\
         COPY --from=deps data/hello /from-stage\n\
         RUN --mount=from=deps,target=/m cp /m/bin/tool /tool\n",
        &[],
    )
    .ok();
    assert_eq!(f.layer(-2), [("from-stage".to_owned(), 0o644, 0, 0)]);
    assert!(
        f.layer(-1).contains(&("tool".to_owned(), 0o750, 0, 0)),
        "{:?}",
        f.layer(-1)
    );
}

#[test]
fn run_mount_from_an_image_context_uses_its_image() {
    let f = skip_unless!(Fixture::new("overlay"));
    // `tools` is no image anywhere: only the named context makes it busybox:local.
    f.build(
        concat!(
            "FROM busybox:local\n",
            "RUN --mount=from=tools,target=/t /t/bin/busybox true && cp /t/etc/group /group\n",
        ),
        &["--build-context", "tools=docker-image://busybox:local"],
    )
    .ok();
    let paths: Vec<String> = f.layer(-1).into_iter().map(|e| e.0).collect();
    assert!(paths.contains(&"group".to_owned()), "{paths:?}");
}

#[test]
fn a_missing_directory_fails_before_any_step() {
    let f = skip_unless!(Fixture::new("overlay"));
    let missing = f.deps().join("does-not-exist");
    let flag = format!("deps={}", missing.display());
    let run = f
        .build(
            "FROM busybox:local\nRUN echo must-not-run\n",
            &["--build-context", &flag],
        )
        .fails_with(1);
    assert!(
        run.stderr.contains(&format!(
            "invalid --build-context `deps={}`: `{}` is not a directory",
            missing.display(),
            missing.display()
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("RUN"), "{}", run.stderr);

    // An invalid ignore file in the directory fails the same way.
    write_files(f.deps(), &[(".dockerignore", "a[\n")]);
    let run = f.build("FROM deps\n", &[]).fails_with(1);
    assert!(
        run.stderr.contains("invalid --build-context `deps=")
            && run.stderr.contains(".dockerignore:1"),
        "{}",
        run.stderr
    );
}
