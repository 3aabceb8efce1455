//! `kiln build` options and multi-stage plans: `--target`, `--build-arg` into FROM, stages as
//! bases, `-f` outside the context, a Dockerfile on stdin, `--iidfile`.

use std::io::Write;
use std::process::Stdio;

use crate::harness::{self, skip_unless};
use crate::support::{inspect, kiln, kiln_env, write_files};

#[test]
fn stage_as_base_and_target_selection() {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch AS Base\nCOPY a.txt /\nENV FROM_BASE=1\nCMD [\"base\"]\n\nFROM base AS app\nCOPY b.txt /\nENTRYPOINT [\"/app\"]\n\nFROM scratch AS other\nCOPY c.txt /\n",
            ),
            ("a.txt", "a"),
            ("b.txt", "b"),
            ("c.txt", "c"),
        ],
    );
    let root = harness::tempdir();
    let ctx_path = ctx.path().to_str().unwrap();

    // Default target: the last stage only.
    kiln(root.path(), &["build", "-q", "-t", "last", ctx_path]).ok();
    assert_eq!(
        inspect(root.path(), "last")["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // `--target app` builds on stage `Base` (names are case-insensitive): its layers, its
    // ENV; ENTRYPOINT in the new stage resets the CMD inherited from the base.
    let out = kiln(
        root.path(),
        &["build", "-t", "app", "--target", "APP", ctx_path],
    )
    .ok();
    assert!(
        !out.stderr.contains("c.txt"),
        "stage `other` is pruned: {}",
        out.stderr
    );
    let app = inspect(root.path(), "app");
    assert_eq!(app["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert!(
        app["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "FROM_BASE=1")
    );
    assert_eq!(app["Config"]["Entrypoint"], serde_json::json!(["/app"]));
    assert!(app["Config"]["Cmd"].is_null(), "{}", app["Config"]);

    let bad = kiln(root.path(), &["build", "--target", "ap", ctx_path]).fails_with(1);
    assert!(
        bad.stderr.contains("app"),
        "suggests the stage: {}",
        bad.stderr
    );
}

#[test]
fn build_args_reach_from_lines_and_stages() {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            (
                "Dockerfile",
                "ARG BASE=scratch\nFROM ${BASE}\nARG WHERE=/default\nARG BASE\nCOPY f $WHERE/\nLABEL base=$BASE where=$WHERE\n",
            ),
            ("f", "x"),
        ],
    );
    let root = harness::tempdir();
    kiln(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "a",
            "--build-arg",
            "WHERE=/given",
            ctx.path().to_str().unwrap(),
        ],
    )
    .ok();
    let labels = &inspect(root.path(), "a")["Config"]["Labels"];
    assert_eq!(labels["where"], "/given");
    assert_eq!(
        labels["base"], "scratch",
        "a global ARG redeclared in the stage keeps its value"
    );
    // ARG values never reach the image's environment.
    assert!(
        !inspect(root.path(), "a")["Config"]["Env"]
            .to_string()
            .contains("WHERE")
    );
}

#[test]
fn dockerfile_outside_context_on_stdin_and_iidfile() {
    let ctx = harness::tempdir();
    write_files(ctx.path(), &[("f", "x")]);
    let elsewhere = harness::tempdir();
    write_files(
        elsewhere.path(),
        &[("build.Dockerfile", "FROM scratch\nCOPY f /f\n")],
    );
    let root = harness::tempdir();
    let iid = elsewhere.path().join("iid");
    let df = elsewhere.path().join("build.Dockerfile");
    let epoch = [("SOURCE_DATE_EPOCH", "0")];
    let out = kiln_env(
        root.path(),
        &[
            "build",
            "-q",
            "-f",
            df.to_str().unwrap(),
            "--iidfile",
            iid.to_str().unwrap(),
            ctx.path().to_str().unwrap(),
        ],
        &epoch,
    )
    .ok();
    assert_eq!(fs_err::read_to_string(&iid).unwrap(), out.stdout.trim());

    let mut child = harness::kiln_cmd(root.path())
        .args([
            "build",
            "-q",
            "-t",
            "stdin",
            "-f",
            "-",
            ctx.path().to_str().unwrap(),
        ])
        .env("SOURCE_DATE_EPOCH", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM scratch\nCOPY f /f\n")
        .unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&res.stdout),
        out.stdout,
        "same Dockerfile, same context: same image"
    );
}

#[test]
fn platform_other_than_host_is_refused() {
    let ctx = harness::tempdir();
    write_files(ctx.path(), &[("Dockerfile", "FROM scratch\n")]);
    let root = harness::tempdir();
    let out = kiln(
        root.path(),
        &[
            "build",
            "--platform",
            "linux/s390x",
            ctx.path().to_str().unwrap(),
        ],
    )
    .fails_with(1);
    assert!(
        out.stderr.contains("only the native platform"),
        "{}",
        out.stderr
    );
}

#[test]
fn automatic_platform_args() {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM --platform=$BUILDPLATFORM scratch\nARG TARGETARCH\nARG TARGETPLATFORM\nLABEL arch=$TARGETARCH platform=$TARGETPLATFORM undeclared=${BUILDOS:-unset}\n",
        )],
    );
    let root = harness::tempdir();
    kiln(
        root.path(),
        &["build", "-q", "-t", "p", ctx.path().to_str().unwrap()],
    )
    .ok();
    let labels = &inspect(root.path(), "p")["Config"]["Labels"];
    let arch = &inspect(root.path(), "p")["Architecture"];
    assert_eq!(&labels["arch"], arch);
    assert_eq!(
        labels["platform"],
        format!("linux/{}", arch.as_str().unwrap())
    );
    assert_eq!(
        labels["undeclared"], "unset",
        "platform args need a declaration inside a stage"
    );

    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM --platform=linux/s390x scratch\n")],
    );
    let out = kiln(root.path(), &["build", ctx.path().to_str().unwrap()]).fails_with(1);
    assert!(
        out.stderr.contains("not the native platform") && out.stderr.contains("--> Dockerfile:1:1"),
        "{}",
        out.stderr
    );
}

#[test]
fn zstd_and_uncompressed_layers() {
    skip_unless!(harness::root_required());
    let zstd_tool = skip_unless!(harness::which("zstd"));
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch AS base\nCOPY a.txt /a/\nFROM base\nCOPY b.txt /a/\n",
            ),
            ("a.txt", "A"),
            ("b.txt", "B"),
        ],
    );
    let root = harness::tempdir();
    for (compression, media_type) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("uncompressed", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let tag = format!("c:{compression}");
        kiln(
            root.path(),
            &[
                "build",
                "-q",
                "--compression",
                compression,
                "-t",
                &tag,
                ctx.path().to_str().unwrap(),
            ],
        )
        .ok();
        let manifest = &inspect(root.path(), &tag)["Manifest"];
        let layers = manifest["layers"].as_array().unwrap();
        // The second stage unpacked the first stage's layer (detected by magic) to build on it.
        assert_eq!(layers.len(), 2);
        assert!(
            layers.iter().all(|l| l["mediaType"] == media_type),
            "{manifest}"
        );
        if compression == "zstd" {
            let digest = layers[1]["digest"].as_str().unwrap();
            let blob = root.path().join("blobs/sha256").join(&digest[7..]);
            let tar = std::process::Command::new(&zstd_tool)
                .args(["-dc", blob.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(tar.status.success());
            let mut archive = tar::Archive::new(&tar.stdout[..]);
            let names: Vec<String> = archive
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
                .collect();
            assert!(names.contains(&"a/b.txt".to_owned()), "{names:?}");
        }
    }
}
