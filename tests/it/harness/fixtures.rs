//! Image fixtures: the busybox base image (an OCI layout built by
//! `testdata/make-busybox-image.sh`) and pushing it to a test registry with skopeo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

use super::{Registry, Skip, run_ok, show_command, tempdir, which};

/// The tag (`org.opencontainers.image.ref.name`) of the image in [`busybox_layout`].
pub const BUSYBOX_TAG: &str = "latest";

/// Exit status of the script for "a prerequisite is missing".
const EXIT_SKIP: i32 = 77;

/// Timestamp for the fixture, pinned so that the layout does not depend on the caller's
/// `SOURCE_DATE_EPOCH`.
const FIXTURE_EPOCH: &str = "0";

/// Path of an OCI image layout holding a busybox image tagged [`BUSYBOX_TAG`]
/// (`target/testdata/busybox-oci`). Treat it as read-only.
///
/// Built at most once per `target/` and script version: the first caller (in this process, or in
/// any other test process — nextest runs one process per test) takes a file lock, runs the script
/// into a temp dir and renames the result into place; later callers find it ready. A change to
/// the script rebuilds it. Returns a [`Skip`] when the script reports a missing prerequisite
/// (exit status 77, e.g. busybox-static neither installed nor downloadable); panics on any other
/// failure.
pub fn busybox_layout() -> Result<PathBuf, Skip> {
    static LAYOUT: OnceLock<Result<PathBuf, Skip>> = OnceLock::new();
    LAYOUT.get_or_init(build_busybox_layout).clone()
}

fn build_busybox_layout() -> Result<PathBuf, Skip> {
    let script = super::repo_root().join("testdata/make-busybox-image.sh");
    let script_bytes = fs_err::read(&script).unwrap_or_else(|e| panic!("{e}"));
    which("bash")?;

    let base = super::target_dir().join("testdata");
    fs_err::create_dir_all(&base).unwrap_or_else(|e| panic!("{e}"));
    let layout = base.join("busybox-oci");
    let stamp_path = base.join("busybox-oci.stamp");
    // What the cached layout was built from; a mismatch means rebuild.
    let stamp = format!(
        "script-sha256={}\ntag={BUSYBOX_TAG}\nSOURCE_DATE_EPOCH={FIXTURE_EPOCH}\n",
        hex::encode(Sha256::digest(&script_bytes))
    );

    // Serialise builders across processes; the lock is released when `lock` is closed.
    let lock_path = base.join("busybox-oci.lock");
    let lock = fs_err::File::create(&lock_path).unwrap_or_else(|e| panic!("{e}"));
    rustix::fs::flock(lock.file(), rustix::fs::FlockOperation::LockExclusive)
        .unwrap_or_else(|e| panic!("flock {}: {e}", lock_path.display()));

    let fresh = layout.join("index.json").is_file()
        && fs_err::read_to_string(&stamp_path).is_ok_and(|s| s == stamp);
    if fresh {
        return Ok(layout);
    }

    // Build next to the final location (same filesystem: renames are atomic).
    let staging = tempfile::Builder::new()
        .prefix(".busybox-oci.")
        .tempdir_in(&base)
        .unwrap_or_else(|e| panic!("creating a temp dir in {}: {e}", base.display()));
    let built = staging.path().join("layout");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(&built)
        .arg(BUSYBOX_TAG)
        .env("SOURCE_DATE_EPOCH", FIXTURE_EPOCH);
    let shown = show_command(&cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {shown}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(EXIT_SKIP) {
        let reason = stderr.lines().last().unwrap_or("missing prerequisite");
        return Err(Skip::new(format!("busybox image unavailable: {reason}")));
    }
    assert!(
        out.status.success(),
        "{shown} failed ({})\n{stderr}",
        out.status
    );

    // Invalidate, swap, re-validate: a crash at any point leaves either no stamp (rebuild next
    // time) or a complete layout with a matching stamp.
    if let Err(e) = fs_err::remove_file(&stamp_path) {
        assert!(e.kind() == std::io::ErrorKind::NotFound, "{e}");
    }
    if layout.exists() {
        fs_err::rename(&layout, staging.path().join("old")).unwrap_or_else(|e| panic!("{e}"));
    }
    fs_err::rename(&built, &layout).unwrap_or_else(|e| panic!("{e}"));
    let stamp_tmp = staging.path().join("stamp");
    fs_err::write(&stamp_tmp, &stamp).unwrap_or_else(|e| panic!("{e}"));
    fs_err::rename(&stamp_tmp, &stamp_path).unwrap_or_else(|e| panic!("{e}"));
    Ok(layout)
}

/// The manifest digest (`sha256:...`) that `layout`'s index.json gives for `tag`.
pub fn layout_manifest_digest(layout: &Path, tag: &str) -> String {
    let index_path = layout.join("index.json");
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(&index_path).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{}: {e}", index_path.display()));
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("no manifest tagged {tag:?} in {}", index_path.display()))
        .to_owned()
}

/// Pushes the busybox image to `reg` as `repo_tag` (`REPO[:TAG]`, e.g. `library/busybox:1`) with
/// `skopeo copy --dest-tls-verify=false oci:LAYOUT:latest docker://HOST:PORT/REPO:TAG`, and returns
/// the digest of the pushed manifest. A [`Skip`] when skopeo or the busybox image is unavailable;
/// panics if the copy fails.
pub fn skopeo_push_busybox(reg: &Registry, repo_tag: &str) -> Result<String, Skip> {
    let skopeo = which("skopeo")?;
    let layout = busybox_layout()?;
    let layout_str = layout.to_string_lossy();
    assert!(
        !layout_str.contains(':'),
        "skopeo's oci: transport cannot address a layout path containing ':': {layout_str}"
    );

    let tmp = tempdir();
    let digest_file = tmp.path().join("digest");
    run_ok(
        Command::new(skopeo)
            // Our own throw-away registry: no signature policy to enforce.
            .arg("--insecure-policy")
            .args(["copy", "--quiet", "--dest-tls-verify=false", "--digestfile"])
            .arg(&digest_file)
            .arg(format!("oci:{layout_str}:{BUSYBOX_TAG}"))
            .arg(format!("docker://{}/{repo_tag}", reg.host_port())),
    );
    let digest = fs_err::read_to_string(&digest_file).unwrap_or_else(|e| panic!("{e}"));
    Ok(digest.trim().to_owned())
}
