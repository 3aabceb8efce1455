//! COPY and ADD in every form, WORKDIR's owner, HEALTHCHECK and ONBUILD, end to end: real
//! builds on a `busybox:local` base (its `/etc/passwd` has `app` 1000 and `/etc/group` `extra`
//! 2000), the results read from the image's layers and config.
//!
//! Network: ADD URLs and git sources are served by a small HTTP server thread on 127.0.0.1
//! (static files; git over its "dumb" HTTP protocol after `git update-server-info`).
//! Tools: `tar`, `gzip`, `bzip2`, `xz`, `zstd`, `git` (Debian packages tar, gzip, bzip2,
//! xz-utils, zstd, git); a test whose tool is missing says so and skips.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::harness::{self, Skip, skip_unless};
use crate::support::{
    Run, busybox_store, config_of, kiln_env, layer_entries, manifest_layers, write_files,
};

/// A store with `busybox:local` in it, and a context directory for the test's Dockerfile.
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

    fn kiln(&self, args: &[&str]) -> Run {
        kiln_env(
            self.root.path(),
            args,
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        )
    }

    /// Build `dockerfile` (with `files` in the context) as `tag`.
    fn build(&self, tag: &str, dockerfile: &str, files: &[(&str, &str)]) -> Run {
        let mut all = vec![("Dockerfile", dockerfile)];
        all.extend_from_slice(files);
        write_files(self.ctx.path(), &all);
        self.kiln(&[
            "build",
            "--progress=plain",
            "-t",
            tag,
            self.ctx.path().to_str().unwrap(),
        ])
    }

    /// `path mode uid:gid` (type letter first) of every entry in the image's last layer.
    fn last_layer(&self, image: &str) -> Vec<String> {
        let layers = manifest_layers(self.root.path(), image);
        layer_entries(self.root.path(), layers.last().unwrap())
            .into_iter()
            .map(|(path, kind, mode, uid, gid)| {
                let t = match kind {
                    tar::EntryType::Directory => 'd',
                    tar::EntryType::Symlink => 'l',
                    tar::EntryType::Link => 'h',
                    _ => 'f',
                };
                format!("{t} {} {mode:o} {uid}:{gid}", path.trim_end_matches('/'))
            })
            .collect()
    }

    /// The content of `path` in the image's last layer.
    fn file(&self, image: &str, path: &str) -> String {
        use std::io::Read;
        let layers = manifest_layers(self.root.path(), image);
        let bytes = crate::support::blob(self.root.path(), layers.last().unwrap());
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(&bytes[..]));
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == path {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                return s;
            }
        }
        panic!("{path} not in the last layer of {image}")
    }
}

fn history(f: &Fixture, image: &str) -> Vec<(String, bool)> {
    config_of(f.root.path(), image)["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap_or_default().to_owned(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn copy_wildcards_destinations_chown_and_chmod() {
    let f = skip_unless!(Fixture::new());
    let df = "FROM busybox:local\n\
              WORKDIR /w\n\
              COPY --chown=app:extra *.txt sub/ ./\n\
              COPY --chown=app --chmod=u=rwx,go=rx one.txt rel\n\
              COPY --chmod=600 d?r /abs/dir\n\
              COPY nomatch* /never/\n";
    let files = [
        ("one.txt", "1"),
        ("two.txt", "2"),
        ("sub/inner", "i"),
        ("dir/a", "a"),
        ("dir/deeper/b", "b"),
    ];
    f.build("t:1", df, &files).ok();
    let layers = manifest_layers(f.root.path(), "t:1");
    let entries = |i: usize| -> Vec<String> {
        let n = layers.len();
        layer_entries(f.root.path(), &layers[n - i])
            .into_iter()
            .map(|(p, _, mode, uid, gid)| {
                format!("{} {mode:o} {uid}:{gid}", p.trim_end_matches('/'))
            })
            .collect()
    };
    // COPY --chown=app:extra *.txt sub/ ./ : both matches and sub's contents into /w.
    assert_eq!(
        entries(3),
        [
            "w 755 0:0",
            "w/inner 644 1000:2000",
            "w/one.txt 644 1000:2000",
            "w/two.txt 644 1000:2000"
        ]
    );
    // A file to a destination without a slash becomes that file; a symbolic --chmod.
    assert_eq!(entries(2), ["w 755 0:0", "w/rel 755 1000:1000"]);
    // The directory's contents; --chmod applies to the directories copied too, not to the
    // destination the copy creates for them (0755, fsutil `prepareTargetDir`).
    assert_eq!(
        entries(1),
        [
            "abs 755 0:0",
            "abs/dir 755 0:0",
            "abs/dir/a 600 0:0",
            "abs/dir/deeper 600 0:0",
            "abs/dir/deeper/b 600 0:0"
        ]
    );
    let h = history(&f, "t:1");
    let n = h.len();
    assert_eq!(
        h[n - 4],
        (
            "COPY --chown=app:extra *.txt sub/ ./ # buildkit".to_owned(),
            false
        )
    );
    // A wildcard matching nothing copies nothing: no layer, as BuildKit.
    assert_eq!(
        h[n - 1],
        ("COPY nomatch* /never/ # buildkit".to_owned(), true)
    );
}

#[test]
fn copy_errors_are_located_and_clear() {
    let f = skip_unless!(Fixture::new());
    let out = f
        .build(
            "t:1",
            "FROM busybox:local\nCOPY a.txt b.txt /x\n",
            &[("a.txt", ""), ("b.txt", "")],
        )
        .fails_with(1);
    assert!(out.stderr.contains("Dockerfile:2"), "{}", out.stderr);
    assert!(
        out.stderr.contains("must be a directory and end with a /"),
        "{}",
        out.stderr
    );
    let out = f
        .build(
            "t:1",
            "FROM busybox:local\n\nCOPY --chown=ghost a.txt /x\n",
            &[],
        )
        .fails_with(1);
    assert!(out.stderr.contains("Dockerfile:3"), "{}", out.stderr);
    assert!(
        out.stderr.contains("unable to find user ghost"),
        "{}",
        out.stderr
    );
    let out = f
        .build("t:1", "FROM busybox:local\nCOPY missing /x\n", &[])
        .fails_with(1);
    assert!(
        out.stderr.contains("Dockerfile:2") && out.stderr.contains("\"missing\": not found"),
        "{}",
        out.stderr
    );
}

#[test]
fn copy_from_stages_images_heredocs_parents_exclude_and_link() {
    let f = skip_unless!(Fixture::new());
    let df = "FROM busybox:local AS builder\n\
              RUN mkdir -p /out && echo built > /out/app && chown 1000:1000 /out/app\n\
              FROM scratch\n\
              ENV WHO=world\n\
              COPY --from=builder /out/app /bin/\n\
              COPY --from=0 /out /copy-by-index\n\
              COPY --from=busybox:local /etc/group /from-image\n\
              COPY <<EOF <<'RAW' /docs/\n\
              hello $WHO\n\
              EOF\n\
              kept $WHO\n\
              RAW\n\
              COPY --parents src/./pkg/*.js lib/**/*.txt /p/\n\
              COPY --exclude=*.md --exclude=skip tree/ /t/\n\
              COPY --link tree/keep.txt /linked/\n";
    let files = [
        ("src/pkg/a.js", "a"),
        ("src/pkg/b.css", "b"),
        ("lib/x/y/c.txt", "c"),
        ("tree/keep.txt", "k"),
        ("tree/drop.md", "d"),
        ("tree/skip/z", "z"),
    ];
    f.build("t:1", df, &files).ok();
    let layers = manifest_layers(f.root.path(), "t:1");
    let paths = |i: usize| -> Vec<String> {
        layer_entries(f.root.path(), &layers[i])
            .into_iter()
            .map(|(p, _, _, uid, gid)| format!("{} {uid}:{gid}", p.trim_end_matches('/')))
            .collect()
    };
    // COPY --from keeps the files' owners without --chown (BuildKit); directories it creates
    // for the destination are root's.
    assert_eq!(paths(0), ["bin 0:0", "bin/app 1000:1000"]);
    assert_eq!(
        paths(1),
        ["copy-by-index 0:0", "copy-by-index/app 1000:1000"]
    );
    assert_eq!(paths(2), ["from-image 0:0"]);
    assert_eq!(paths(3), ["docs 0:0", "docs/EOF 0:0", "docs/RAW 0:0"]);
    let text = |i: usize, path: &str| {
        use std::io::Read;
        let bytes = crate::support::blob(f.root.path(), &layers[i]);
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(&bytes[..]));
        let mut out = String::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == path {
                e.read_to_string(&mut out).unwrap();
            }
        }
        out
    };
    assert_eq!(text(3, "docs/EOF"), "hello world\n");
    assert_eq!(text(3, "docs/RAW"), "kept $WHO\n");
    assert_eq!(
        paths(4),
        [
            "p 0:0",
            "p/lib 0:0",
            "p/lib/x 0:0",
            "p/lib/x/y 0:0",
            "p/lib/x/y/c.txt 0:0",
            "p/pkg 0:0",
            "p/pkg/a.js 0:0"
        ]
    );
    assert_eq!(paths(5), ["t 0:0", "t/keep.txt 0:0"]);
    assert_eq!(paths(6), ["linked 0:0", "linked/keep.txt 0:0"]);
    let h = history(&f, "t:1");
    assert!(
        h.iter().any(|(c, _)| c == "COPY /out/app /bin/ # buildkit"),
        "{h:?}"
    );
    assert!(
        h.iter()
            .any(|(c, _)| c == "COPY <<EOF <<RAW /docs/ # buildkit"),
        "{h:?}"
    );
    assert!(
        h.iter()
            .any(|(c, _)| c == "COPY --parents src/./pkg/*.js lib/**/*.txt /p/ # buildkit"),
        "{h:?}"
    );
    // A later stage sees the linked layer stacked like any other.
    f.build(
        "t:2",
        "FROM t:1\nCOPY --from=t:1 /linked/keep.txt /again\n",
        &[],
    )
    .ok();
    assert_eq!(f.file("t:2", "again"), "k");
}

#[test]
fn workdir_is_created_as_the_current_user() {
    let f = skip_unless!(Fixture::new());
    // BuildKit `dispatchWorkdir`: `llb.Mkdir(wd, 0755, WithParents, WithUser(USER))`, the user
    // resolved in the image (`app` is 1000:1000 in busybox:local's passwd).
    let df = "FROM busybox:local\n\
              USER app\n\
              WORKDIR /srv/app\n\
              RUN touch created-by-app\n\
              USER 2000\n\
              WORKDIR /srv/other\n\
              USER app:extra\n\
              WORKDIR /srv/app\n";
    f.build("t:1", df, &[]).ok();
    let layers = manifest_layers(f.root.path(), "t:1");
    let entries = |i: usize| -> Vec<String> {
        layer_entries(f.root.path(), &layers[layers.len() - i])
            .into_iter()
            .map(|(p, _, mode, uid, gid)| {
                format!("{} {mode:o} {uid}:{gid}", p.trim_end_matches('/'))
            })
            .collect()
    };
    assert_eq!(entries(3), ["srv 755 1000:1000", "srv/app 755 1000:1000"]);
    assert_eq!(
        entries(2),
        [
            "srv 755 1000:1000",
            "srv/app 755 1000:1000",
            "srv/app/created-by-app 644 1000:1000"
        ]
    );
    // A numeric user without a group is uid:uid (BuildKit's `WithUser`), not the RUN rule.
    assert_eq!(entries(1), ["srv 755 1000:1000", "srv/other 755 2000:2000"]);
    // An existing directory makes no layer.
    assert_eq!(
        history(&f, "t:1").last().unwrap(),
        &("WORKDIR /srv/app".to_owned(), true)
    );
    // A USER the image's passwd does not know gets a root-owned WORKDIR, as with BuildKit
    // (docker 20.10 checked by hand), not an error: the user may only exist at run time.
    f.build("t:2", "FROM busybox:local\nUSER ghost\nWORKDIR /x\n", &[])
        .ok();
    let layers = manifest_layers(f.root.path(), "t:2");
    let made: Vec<String> = layer_entries(f.root.path(), layers.last().unwrap())
        .into_iter()
        .map(|(p, _, mode, uid, gid)| format!("{} {mode:o} {uid}:{gid}", p.trim_end_matches('/')))
        .collect();
    assert_eq!(made, ["x 755 0:0"]);
}

#[test]
fn add_creates_the_parents_an_archive_has_no_entry_for() {
    let f = skip_unless!(Fixture::new());
    // Only `pkg/sub/owned` (1000:2000, 0640): no entry for `pkg/` or `pkg/sub/`.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o640);
    h.set_uid(1000);
    h.set_gid(2000);
    h.set_size(2);
    b.append_data(&mut h, "pkg/sub/owned", &b"x\n"[..]).unwrap();
    fs_err::write(f.ctx.path().join("owned.tar"), b.into_inner().unwrap()).unwrap();
    f.build("t:1", "FROM busybox:local\nADD owned.tar /owned/\n", &[])
        .ok();
    // moby `archive.Unpack`: missing parents are made 0755, owned by root.
    assert_eq!(
        f.last_layer("t:1"),
        [
            "d owned 755 0:0",
            "d owned/pkg 755 0:0",
            "d owned/pkg/sub 755 0:0",
            "f owned/pkg/sub/owned 640 1000:2000"
        ]
    );
    assert_eq!(f.file("t:1", "owned/pkg/sub/owned"), "x\n");
}

/// `cmd` with `args`, or a skip when the tool is missing.
fn tool(cmd: &str, args: &[&str], dir: &Path) -> Result<(), Skip> {
    harness::which(cmd)?;
    let status = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "{cmd} {args:?}");
    Ok(())
}

fn compress(tool_name: &str, input: &Path, output: &Path) -> Result<(), Skip> {
    harness::which(tool_name)?;
    let out = Command::new(tool_name)
        .arg("-c")
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    fs_err::write(output, out.stdout).unwrap();
    Ok(())
}

#[test]
fn add_extracts_local_archives_of_every_compression() {
    let f = skip_unless!(Fixture::new());
    let prep = || -> Result<(), Skip> {
        let ctx = f.ctx.path();
        write_files(
            ctx,
            &[("payload/dir/file", "inside"), ("plain.txt", "just text")],
        );
        tool(
            "tar",
            &[
                "-cf",
                "a.tar",
                "--owner=7",
                "--group=8",
                "-C",
                "payload",
                ".",
            ],
            ctx,
        )?;
        compress("gzip", &ctx.join("a.tar"), &ctx.join("a.tar.gz"))?;
        compress("bzip2", &ctx.join("a.tar"), &ctx.join("a.tar.bz2"))?;
        compress("xz", &ctx.join("a.tar"), &ctx.join("a.tar.xz"))?;
        compress("zstd", &ctx.join("a.tar"), &ctx.join("a.tar.zst"))?;
        compress("gzip", &ctx.join("plain.txt"), &ctx.join("plain.txt.gz"))?;
        Ok(())
    };
    skip_unless!(prep());
    let df = "FROM busybox:local\n\
              ADD a.tar /x/tar\n\
              ADD a.tar.gz /x/gz/\n\
              ADD a.tar.bz2 /x/bz2\n\
              ADD a.tar.xz /x/xz\n\
              ADD a.tar.zst /x/zst\n\
              ADD plain.txt.gz /x/\n\
              ADD --unpack=false a.tar /x/kept/\n";
    f.build("t:1", df, &[]).ok();
    let layers = manifest_layers(f.root.path(), "t:1");
    let n = layers.len();
    for (i, name) in ["tar", "gz", "bz2", "xz", "zst"].iter().enumerate() {
        let entries: Vec<String> = layer_entries(f.root.path(), &layers[n - 7 + i])
            .into_iter()
            .map(|(p, _, _, uid, gid)| format!("{} {uid}:{gid}", p.trim_end_matches('/')))
            .collect();
        assert_eq!(
            entries,
            [
                "x 0:0".to_owned(),
                format!("x/{name} 0:0"),
                format!("x/{name}/dir 7:8"),
                format!("x/{name}/dir/file 7:8")
            ],
            "{name}: the archive's owners are kept; its `./` entry leaves the destination as is"
        );
    }
    // A compressed file that is no tar is copied as is; --unpack=false keeps an archive.
    let plain: Vec<String> = layer_entries(f.root.path(), &layers[n - 2])
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(plain, ["x/", "x/plain.txt.gz"]);
    assert_eq!(
        f.last_layer("t:1"),
        ["d x 755 0:0", "d x/kept 755 0:0", "f x/kept/a.tar 644 0:0"]
    );
}

/// A static file server on 127.0.0.1 for the test's lifetime (GET only; `Last-Modified` on
/// every file).
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const LAST_MODIFIED: &str = "Tue, 14 Nov 2023 22:13:20 GMT";

impl Server {
    fn serve(dir: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = stream {
                    let _ = answer(s, &dir);
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or("").trim_start_matches('/');
    let mut out = stream;
    let file = (!path.contains("..")).then(|| dir.join(path));
    match file.and_then(|p| fs_err::read(p).ok()) {
        Some(body) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: {LAST_MODIFIED}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(&body)?;
        }
        None => write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
    }
    out.flush()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn add_urls_with_checksums() {
    let f = skip_unless!(Fixture::new());
    let served = harness::tempdir();
    write_files(
        served.path(),
        &[("files/tool.sh", "#!/bin/sh\necho tool\n")],
    );
    let server = Server::serve(served.path().to_owned());
    let url = server.url("files/tool.sh");
    let sum = sha256_hex(b"#!/bin/sh\necho tool\n");
    let df = format!(
        "FROM busybox:local\n\
         ADD {url} /dl/\n\
         ADD --checksum=sha256:{sum} --chmod=755 {url} /bin/tool\n"
    );
    f.build("t:1", &df, &[]).ok();
    let layers = manifest_layers(f.root.path(), "t:1");
    let n = layers.len();
    let first: Vec<(String, u32)> = layer_entries(f.root.path(), &layers[n - 2])
        .into_iter()
        .map(|(p, _, mode, _, _)| (p, mode))
        .collect();
    assert_eq!(
        first,
        [("dl/".to_owned(), 0o755), ("dl/tool.sh".to_owned(), 0o600)]
    );
    assert_eq!(f.file("t:1", "bin/tool"), "#!/bin/sh\necho tool\n");
    // The mtime is the server's Last-Modified (clamped by SOURCE_DATE_EPOCH 1700000000, which is
    // 2023-11-14 22:13:20, the same instant).
    let bytes = crate::support::blob(f.root.path(), &layers[n - 2]);
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(&bytes[..]));
    let mtimes: Vec<u64> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().header().mtime().unwrap())
        .collect();
    assert_eq!(mtimes[1], 1_700_000_000);

    let wrong = "0".repeat(64);
    let df = format!("FROM busybox:local\n\nADD --checksum=sha256:{wrong} {url} /x\n");
    let out = f.build("t:2", &df, &[]).fails_with(1);
    assert!(out.stderr.contains("Dockerfile:3"), "{}", out.stderr);
    assert!(out.stderr.contains("does not match"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&sum),
        "the actual digest is shown: {}",
        out.stderr
    );
    let df = format!("FROM busybox:local\nADD {} /x\n", server.url("missing"));
    let out = f.build("t:3", &df, &[]).fails_with(1);
    assert!(
        out.stderr.contains("Dockerfile:2") && out.stderr.contains("404"),
        "{}",
        out.stderr
    );
    let out = f
        .build(
            "t:4",
            "FROM busybox:local\nADD --checksum=sha256:00 a /x\n",
            &[("a", "")],
        )
        .fails_with(1);
    assert!(out.stderr.contains("non-HTTP"), "{}", out.stderr);
}

#[test]
fn add_git_repositories() {
    let f = skip_unless!(Fixture::new());
    let served = harness::tempdir();
    let make = || -> Result<(), Skip> {
        let work = served.path().join("work");
        fs_err::create_dir_all(work.join("sub")).unwrap();
        fs_err::write(work.join("README"), "readme\n").unwrap();
        fs_err::write(work.join("sub/code.txt"), "v1\n").unwrap();
        let git = |args: &[&str]| tool("git", args, &work);
        git(&["init", "-q", "-b", "main"])?;
        git(&["add", "."])?;
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "one",
            "--date=@1600000000",
        ])?;
        git(&["tag", "v1"])?;
        fs_err::write(work.join("sub/code.txt"), "v2\n").unwrap();
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-am",
            "two",
        ])?;
        tool(
            "git",
            &["clone", "-q", "--bare", "work", "repo.git"],
            served.path(),
        )?;
        tool(
            "git",
            &["update-server-info"],
            &served.path().join("repo.git"),
        )?;
        Ok(())
    };
    skip_unless!(make());
    let server = Server::serve(served.path().to_owned());
    let repo = server.url("repo.git");
    let df = format!(
        "FROM busybox:local\n\
         ADD {repo} /src/\n\
         ADD {repo}#v1:sub /old\n\
         ADD --keep-git-dir=true {repo}#main /withgit\n"
    );
    f.build("t:1", &df, &[]).ok();
    let layers = manifest_layers(f.root.path(), "t:1");
    let n = layers.len();
    let names = |i: usize| -> Vec<String> {
        layer_entries(f.root.path(), &layers[i])
            .into_iter()
            .map(|e| e.0)
            .collect()
    };
    assert_eq!(
        names(n - 3),
        ["src/", "src/README", "src/sub/", "src/sub/code.txt"]
    );
    assert_eq!(names(n - 2), ["old/", "old/code.txt"]);
    assert!(
        names(n - 1).iter().any(|p| p == "withgit/.git/HEAD"),
        "{:?}",
        names(n - 1)
    );
    let code = {
        use std::io::Read;
        let bytes = crate::support::blob(f.root.path(), &layers[n - 2]);
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(&bytes[..]));
        let mut s = String::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == "old/code.txt" {
                e.read_to_string(&mut s).unwrap();
            }
        }
        s
    };
    assert_eq!(code, "v1\n", "the tag's content");
    let df = format!("FROM busybox:local\nADD {repo}#nope /x\n");
    let out = f.build("t:2", &df, &[]).fails_with(1);
    assert!(
        out.stderr.contains("Dockerfile:2") && out.stderr.contains("nope"),
        "{}",
        out.stderr
    );
}

#[test]
fn healthcheck_and_onbuild_triggers() {
    let f = skip_unless!(Fixture::new());
    let df = "FROM busybox:local\n\
              HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD wget -q localhost || exit 1\n\
              ONBUILD COPY trigger.txt /from-trigger.txt\n\
              ONBUILD RUN echo ran > /ran\n";
    f.build("parent:1", df, &[]).ok();
    let config = config_of(f.root.path(), "parent:1");
    assert_eq!(
        config["config"]["Healthcheck"],
        serde_json::json!({
            "Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
            "Interval": 30_000_000_000u64,
            "Timeout": 3_000_000_000u64,
            "Retries": 3
        })
    );
    assert_eq!(
        config["config"]["OnBuild"],
        serde_json::json!(["COPY trigger.txt /from-trigger.txt", "RUN echo ran > /ran"])
    );
    let h = history(&f, "parent:1");
    assert_eq!(
        h.last().unwrap(),
        &(
            r#"HEALTHCHECK &{["CMD-SHELL" "wget -q localhost || exit 1"] "30s" "3s" "0s" "0s" '\x03'}"#
                .to_owned(),
            true
        )
    );
    // A child runs the triggers right after FROM, and its OnBuild is empty.
    f.build(
        "child:1",
        "FROM parent:1\nHEALTHCHECK NONE\n",
        &[("trigger.txt", "from the child's context")],
    )
    .ok();
    let config = config_of(f.root.path(), "child:1");
    assert!(config["config"]["OnBuild"].is_null(), "{config}");
    assert_eq!(
        config["config"]["Healthcheck"],
        serde_json::json!({"Test": ["NONE"]})
    );
    let layers = manifest_layers(f.root.path(), "child:1");
    let n = layers.len();
    let names = |i: usize| -> Vec<String> {
        layer_entries(f.root.path(), &layers[i])
            .into_iter()
            .map(|e| e.0)
            .collect()
    };
    assert_eq!(names(n - 2), ["from-trigger.txt"]);
    assert_eq!(names(n - 1), ["ran"]);
    // A failing trigger is reported at the FROM line, naming the trigger.
    write_files(f.ctx.path(), &[]);
    fs_err::remove_file(f.ctx.path().join("trigger.txt")).unwrap();
    let out = f
        .build("child:2", "FROM busybox:local\n\nFROM parent:1\n", &[])
        .fails_with(1);
    assert!(out.stderr.contains("Dockerfile:3"), "{}", out.stderr);
    assert!(
        out.stderr.contains("ONBUILD COPY trigger.txt"),
        "{}",
        out.stderr
    );
}
