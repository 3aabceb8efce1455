//! Tests of the harness itself: `cargo test --test it harness`.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::{
    BUSYBOX_TAG, Registry, Skip, busybox_layout, kiln_cmd, layout_manifest_digest, require, run_ok,
    skip_unless, skopeo_push_busybox, tempdir, which,
};

#[test]
fn registry_answers_v2_and_is_gone_after_drop() {
    let reg = skip_unless!(Registry::start());
    let host_port = reg.host_port();
    assert!(host_port.starts_with("127.0.0.1:"), "{host_port}");

    let resp = reg.get("/v2/");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    assert!(reg.catalog().is_empty());
    assert!(reg.tags("nothing/here").is_empty());

    let pid = reg.pid();
    let storage = reg.storage_dir();
    let proc_dir = format!("/proc/{pid}");
    assert!(Path::new(&proc_dir).exists());
    drop(reg);

    // The process was killed and reaped, its port is closed and its storage removed.
    assert!(
        !Path::new(&proc_dir).exists(),
        "registry pid {pid} still exists"
    );
    assert!(
        TcpStream::connect_timeout(&host_port.parse().unwrap(), Duration::from_secs(1)).is_err(),
        "something still listens on {host_port}"
    );
    assert!(!storage.exists(), "{} still exists", storage.display());
}

#[test]
fn registries_get_distinct_ports() {
    let a = skip_unless!(Registry::start());
    let b = skip_unless!(Registry::start());
    assert_ne!(a.host_port(), b.host_port());
    assert_eq!(a.get("/v2/").status, 200);
    assert_eq!(b.get("/v2/").status, 200);
}

#[test]
fn busybox_layout_is_a_valid_oci_layout() {
    let layout = skip_unless!(busybox_layout());
    assert_eq!(busybox_layout(), Ok(layout.clone()), "cached path");

    let read_json = |path: &Path| -> serde_json::Value {
        serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
    };
    assert_eq!(
        read_json(&layout.join("oci-layout")),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = read_json(&layout.join("index.json"));
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );

    // Every blob is stored under its own digest, and manifest → config → layer are consistent.
    let blob = |digest: &str| -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let bytes = fs_err::read(layout.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), hex, "blob {digest}");
        bytes
    };
    let manifest_digest = layout_manifest_digest(&layout, BUSYBOX_TAG);
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&manifest_digest)).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(layers[0]["digest"].as_str().unwrap());
    assert_eq!(layers[0]["size"].as_u64(), Some(layer.len() as u64));

    // The layer has the shell and its applet links, owned by root.
    let mut entries = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&layer[..]));
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        entries.insert(path, (header.mode().unwrap(), link));
    }
    assert_eq!(entries["bin/busybox"].0, 0o755);
    assert_eq!(entries["bin/sh"].1.as_deref(), Some("busybox"));
    assert_eq!(entries["tmp/"].0, 0o1777);
    assert!(entries.contains_key("etc/passwd"));

    // An independent implementation agrees.
    let skopeo = skip_unless!(which("skopeo"));
    let inspect = run_ok(
        Command::new(skopeo)
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:{BUSYBOX_TAG}", layout.display())),
    );
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(inspect.as_bytes()))),
        manifest_digest
    );
}

#[test]
fn busybox_image_is_reproducible() {
    let cached = skip_unless!(busybox_layout());
    let tmp = tempdir();
    let again = tmp.path().join("layout");
    let stdout = run_ok(
        Command::new("bash")
            .arg(super::repo_root().join("testdata/make-busybox-image.sh"))
            .arg(&again)
            .env("SOURCE_DATE_EPOCH", "0"),
    );
    let digest = layout_manifest_digest(&cached, BUSYBOX_TAG);
    assert_eq!(stdout.trim(), digest);
    assert_eq!(layout_manifest_digest(&again, BUSYBOX_TAG), digest);
}

#[test]
fn skopeo_push_busybox_lands_in_the_registry() {
    let reg = skip_unless!(Registry::start());
    let digest = skip_unless!(skopeo_push_busybox(&reg, "selftest/busybox:v1"));
    let layout = skip_unless!(busybox_layout());

    // skopeo pushes the OCI manifest unchanged.
    assert_eq!(digest, layout_manifest_digest(&layout, BUSYBOX_TAG));
    assert_eq!(reg.catalog(), ["selftest/busybox"]);
    assert_eq!(reg.tags("selftest/busybox"), ["v1"]);
    let resp = reg.manifest("selftest/busybox", "v1");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(
        resp.header("content-type"),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    let manifest = resp.json();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    assert!(reg.has_blob("selftest/busybox", layer));
    assert!(!reg.has_blob("selftest/busybox", &format!("sha256:{}", "0".repeat(64))));
}

#[test]
fn which_finds_tools_and_skips_missing_ones() {
    let sh = which("sh").expect("sh is on PATH");
    assert!(sh.is_absolute());
    assert_eq!(which(&sh.to_string_lossy()), Ok(sh));
    assert_eq!(
        which("kiln-no-such-tool"),
        Err(Skip::new("kiln-no-such-tool not installed"))
    );
    assert!(require(true, "unused").is_ok());
    assert_eq!(require(false, "why").unwrap_err().reason(), "why");
}

#[test]
fn kiln_cmd_points_at_the_given_root() {
    let root = tempdir();
    let cmd = kiln_cmd(root.path());
    assert!(Path::new(cmd.get_program()).is_absolute());
    let args: Vec<_> = cmd.get_args().collect();
    assert_eq!(
        args,
        [std::ffi::OsStr::new("--root"), root.path().as_os_str()]
    );
    assert!(
        cmd.get_envs()
            .any(|(k, v)| k == "KILN_ROOT" && v == Some(root.path().as_os_str()))
    );
}
