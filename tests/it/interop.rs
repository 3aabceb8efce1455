//! Interoperability with real clients over a real registry: skopeo pushes the busybox base, kiln
//! pulls it and builds on it, kiln pushes, and skopeo/umoci read what kiln pushed.

use crate::harness::{self, Registry, skip_unless};
use crate::oci_schema::{OciKind, assert_valid};
use crate::support::{inspect, kiln, run_tool, write_files};

#[test]
fn busybox_from_skopeo_build_push_and_read_back() {
    let reg = skip_unless!(Registry::start());
    let skopeo = skip_unless!(harness::which("skopeo"));
    let umoci = skip_unless!(harness::which("umoci"));
    let base_digest = skip_unless!(harness::skopeo_push_busybox(&reg, "library/busybox:latest"));
    let host = reg.host_port();
    let root = harness::tempdir();

    // kiln pull of what skopeo pushed: digest preserved.
    let pulled = kiln(root.path(), &["pull", &format!("{host}/library/busybox")]).ok();
    assert_eq!(
        pulled.stdout.trim(),
        format!("{host}/library/busybox:latest")
    );
    assert_eq!(
        inspect(root.path(), &format!("{host}/library/busybox"))["Descriptor"]["digest"],
        base_digest
    );

    // A build FROM it in a fresh store pulls it automatically.
    let root = harness::tempdir();
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {host}/library/busybox\nCOPY greeting.txt /srv/\nCMD [\"cat\", \"/srv/greeting.txt\"]\n"
                ),
            ),
            ("greeting.txt", "hello from kiln\n"),
        ],
    );
    let id = kiln(
        root.path(),
        &[
            "build",
            "-t",
            &format!("{host}/app:1"),
            ctx.path().to_str().unwrap(),
        ],
    )
    .ok()
    .stdout
    .trim()
    .to_owned();
    let image = inspect(root.path(), &format!("{host}/app:1"));
    assert_eq!(
        image["RootFS"]["Layers"].as_array().unwrap().len(),
        2,
        "busybox layer + COPY layer"
    );
    assert_eq!(
        image["Config"]["Cmd"],
        serde_json::json!(["cat", "/srv/greeting.txt"])
    );

    // kiln push, then every document the registry holds validates against the OCI schemas.
    let pushed = kiln(root.path(), &["push", &format!("{host}/app:1")]).ok();
    let manifest_digest = image["Descriptor"]["digest"].as_str().unwrap();
    assert_eq!(
        pushed.stdout.trim(),
        format!(
            "1: digest: {manifest_digest} size: {}",
            image["Descriptor"]["size"]
        )
    );
    let manifest = reg.manifest("app", "1");
    assert_eq!(manifest.status, 200);
    assert_valid(OciKind::Manifest, &manifest.body);
    assert!(reg.has_blob("app", &id));
    let config = reg.get(&format!("/v2/app/blobs/{id}"));
    assert_eq!(config.status, 200);
    assert_valid(OciKind::Config, &config.body);

    // A second push finds every blob there already.
    let again = kiln(root.path(), &["push", &format!("{host}/app:1")]).ok();
    assert!(
        !again.stderr.contains(": Pushed"),
        "nothing re-uploaded: {}",
        again.stderr
    );
    assert!(
        again.stderr.contains("Layer already exists"),
        "{}",
        again.stderr
    );

    // skopeo reads it and copies it into an OCI layout; umoci unpacks that to a rootfs.
    let inspected = run_tool(std::process::Command::new(&skopeo).args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{host}/app:1"),
    ]));
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected["Digest"], manifest_digest);
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);
    let work = harness::tempdir();
    let layout = work.path().join("layout");
    run_tool(std::process::Command::new(&skopeo).args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{host}/app:1"),
        &format!("oci:{}:app", layout.display()),
    ]));
    let bundle = work.path().join("bundle");
    run_tool(std::process::Command::new(&umoci).args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:app", layout.display()),
        bundle.to_str().unwrap(),
    ]));
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        fs_err::read_to_string(rootfs.join("srv/greeting.txt")).unwrap(),
        "hello from kiln\n"
    );
    assert!(
        rootfs.join("bin/busybox").is_file(),
        "base layer unpacked too"
    );
    let config_digest = inspected["Digest"].as_str().unwrap();
    assert!(config_digest.starts_with("sha256:"));
}

#[test]
fn build_push_flag_pushes_every_tag() {
    let reg = skip_unless!(Registry::start());
    let host = reg.host_port();
    let root = harness::tempdir();
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM scratch\nCOPY f /\n"), ("f", "x")],
    );
    kiln(
        root.path(),
        &[
            "build",
            "--push",
            "-t",
            &format!("{host}/a:1"),
            "-t",
            &format!("{host}/b:2"),
            ctx.path().to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(reg.tags("a"), ["1"]);
    assert_eq!(reg.tags("b"), ["2"]);
}
