//! Helpers shared by the CLI end-to-end tests: running kiln and reading its store.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::harness;

/// The result of one kiln invocation.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the full output unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "kiln failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the command failed with `code`.
    #[track_caller]
    pub fn fails_with(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run `kiln ARGS` against the store at `root`.
pub fn kiln(root: &Path, args: &[&str]) -> Run {
    finish(
        harness::kiln_cmd(root)
            .args(args)
            .output()
            .expect("kiln runs"),
    )
}

/// Run `kiln ARGS` with extra environment.
pub fn kiln_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = harness::kiln_cmd(root);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    finish(cmd.output().expect("kiln runs"))
}

/// Write files (path → content) under `dir`, creating parents.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = dir.join(path);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(&p, content).unwrap();
    }
}

/// A blob of the store, by `sha256:...` digest.
pub fn blob(root: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    fs_err::read(root.join("blobs/sha256").join(hex))
        .unwrap_or_else(|e| panic!("blob {digest}: {e}"))
}

/// A JSON blob of the store.
pub fn json_blob(root: &Path, digest: &str) -> Value {
    serde_json::from_slice(&blob(root, digest)).unwrap()
}

/// `(path, entry type, mode, uid, gid)` of every entry of a gzip layer blob.
pub fn layer_entries(root: &Path, digest: &str) -> Vec<(String, tar::EntryType, u32, u64, u64)> {
    let bytes = blob(root, digest);
    let mut tar_bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
            )
        })
        .collect()
}

/// The image manifest a name points at, via `kiln image inspect`.
pub fn inspect(root: &Path, name: &str) -> Value {
    let out = kiln(root, &["image", "inspect", name]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    v[0].clone()
}

/// Files under `ingest/` (must be empty when no kiln is running).
pub fn ingest_files(root: &Path) -> usize {
    std::fs::read_dir(root.join("ingest"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Run a command, returning its output; panics with details on failure.
pub fn run_tool(cmd: &mut Command) -> String {
    harness::run_ok(cmd)
}

/// The manifest a name points at.
pub fn manifest_of(root: &Path, name: &str) -> Value {
    let image = inspect(root, name);
    json_blob(root, image["Descriptor"]["digest"].as_str().unwrap())
}

/// The layer digests of the image a name points at, bottom first.
pub fn manifest_layers(root: &Path, name: &str) -> Vec<String> {
    manifest_of(root, name)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// The image config (OCI JSON) a name points at.
pub fn config_of(root: &Path, name: &str) -> Value {
    let image = inspect(root, name);
    json_blob(root, image["Id"].as_str().unwrap())
}

/// `cp -a FROM TO` (TO must not exist).
pub fn copy_tree(from: &Path, to: &Path) {
    run_tool(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// A fresh store with `busybox:local` in it: an image built `FROM scratch` from the busybox
/// rootfs fixture (`harness::rootfs`), reproducibly (`SOURCE_DATE_EPOCH` fixed), with `env`
/// added to kiln's environment. Needs root (the fixture's owners) and Debian's busybox-static.
pub fn busybox_store(env: &[(&str, &str)]) -> Result<tempfile::TempDir, harness::Skip> {
    harness::root_required()?;
    let rootfs = harness::rootfs::busybox_rootfs()?;
    let root = harness::tempdir();
    let base = harness::tempdir();
    write_files(
        base.path(),
        &[("Dockerfile", "FROM scratch\nCOPY rootfs/ /\n")],
    );
    copy_tree(rootfs.path(), &base.path().join("rootfs"));
    let mut all = vec![("SOURCE_DATE_EPOCH", "1700000000")];
    all.extend_from_slice(env);
    let base = base.path().to_str().unwrap();
    kiln_env(
        root.path(),
        &["build", "-q", "-t", "busybox:local", base],
        &all,
    )
    .ok();
    Ok(root)
}

/// `kiln ARGS` with `input` on stdin; stdout kept as bytes.
pub fn kiln_stdin(root: &Path, args: &[&str], input: &[u8]) -> (Run, Vec<u8>) {
    let mut child = harness::kiln_cmd(root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        // kiln may stop reading early on an error; a broken pipe is fine then.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, out.stdout)
}

/// Panics unless every blob of the store at `root` hashes to its name (blobs written unhashed by
/// the store, on the word of the layer encoder, included).
#[track_caller]
pub fn assert_blobs_match_their_names(root: &Path) {
    let dir = root.join("blobs/sha256");
    let mut checked = 0;
    for entry in fs_err::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs_err::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            snapshotter::Digest::of(&bytes).hex(),
            name,
            "{} does not match its name",
            path.display()
        );
        checked += 1;
    }
    assert!(checked > 0, "no blobs in {}", dir.display());
}

/// `podman ARGS` with a private storage root under `dir` (vfs, cgroupfs, no events).
pub fn podman(dir: &Path, args: &[&str]) -> String {
    harness::run_ok(
        Command::new("podman")
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none"])
            .args(args),
    )
}

/// `kiln save --format oci-archive -o DIR/k.tar IMAGE` from the store at `root`; the archive's
/// path.
pub fn save_oci_archive(root: &Path, dir: &Path, image: &str) -> std::path::PathBuf {
    let tar = dir.join("k.tar");
    kiln(
        root,
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            tar.to_str().unwrap(),
            image,
        ],
    )
    .ok();
    tar
}

/// Every file of a tar, by path.
pub fn tar_files(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(path, data);
    }
    out
}

/// The config and manifest (JSON bytes) of an amd64 OCI image with `diff_ids` and `layers`.
pub fn oci_image_json(
    diff_ids: &[snapshotter::Digest],
    layers: &[kiln::image::Descriptor],
) -> (Vec<u8>, Vec<u8>) {
    use kiln::image::media_type;
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {
            "type": "layers",
            "diff_ids": diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {
            "mediaType": media_type::OCI_CONFIG,
            "digest": snapshotter::Digest::of(&config).to_string(),
            "size": config.len(),
        },
        "layers": layers,
    })
    .to_string()
    .into_bytes();
    (config, manifest)
}
