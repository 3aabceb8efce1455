//! `kiln build` of images FROM scratch, and the store commands around them.

use std::os::unix::fs::PermissionsExt;

use crate::harness;
use crate::oci_schema::{OciKind, assert_valid};
use crate::support::{
    blob, ingest_files, inspect, json_blob, kiln, kiln_env, layer_entries, write_files,
};

const DOCKERFILE: &str = r#"FROM scratch
COPY hello.txt /
COPY dir /opt/app/
ENV GREETING="hello world" \
    APP_HOME=/opt/app
WORKDIR $APP_HOME/data
COPY --chmod=600 hello.txt rel.txt
LABEL org.example.k=v "with space"="a b"
EXPOSE 8080 53/udp
USER 1000:1000
ENTRYPOINT ["/opt/app/run"]
CMD serve --port 80
"#;

fn context() -> tempfile::TempDir {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", DOCKERFILE),
            ("hello.txt", "hello\n"),
            ("dir/run", "#!/bin/sh\necho run\n"),
            ("dir/sub/data.txt", "data"),
        ],
    );
    std::fs::set_permissions(
        ctx.path().join("dir/run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    ctx
}

#[test]
fn build_from_scratch_makes_a_valid_oci_image() {
    let ctx = context();
    let root = harness::tempdir();
    let out = kiln(
        root.path(),
        &["build", "-t", "app:1", ctx.path().to_str().unwrap()],
    )
    .ok();
    let id = out.stdout.trim();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "stdout is the image ID only: {:?}",
        out.stdout
    );
    assert!(
        out.stderr.contains("COPY hello.txt /"),
        "progress names the steps: {}",
        out.stderr
    );

    let image = inspect(root.path(), "app:1");
    assert_eq!(image["Id"], id);
    assert_eq!(image["RepoTags"][0], "app:1");
    let config = &image["Config"];
    assert_eq!(
        config["Env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "GREETING=hello world",
            "APP_HOME=/opt/app"
        ])
    );
    assert_eq!(config["WorkingDir"], "/opt/app/data");
    assert_eq!(config["User"], "1000:1000");
    assert_eq!(
        config["Labels"],
        serde_json::json!({"org.example.k": "v", "with space": "a b"})
    );
    assert_eq!(
        config["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(config["Entrypoint"], serde_json::json!(["/opt/app/run"]));
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "serve --port 80"])
    );

    // Manifest and config are valid OCI documents, stored under their digests.
    let manifest_digest = image["Descriptor"]["digest"].as_str().unwrap();
    assert_valid(OciKind::Manifest, &blob(root.path(), manifest_digest));
    let manifest = json_blob(root.path(), manifest_digest);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest["config"]["digest"], id);
    assert_valid(OciKind::Config, &blob(root.path(), id));
    let cfg = json_blob(root.path(), id);
    let layers = manifest["layers"].as_array().unwrap();
    // COPY, COPY, WORKDIR (creates the directory), COPY.
    assert_eq!(layers.len(), 4);
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 4);
    let history = cfg["history"].as_array().unwrap();
    assert_eq!(
        history.iter().filter(|h| h["empty_layer"] != true).count(),
        4
    );
    assert_eq!(history[0]["created_by"], "COPY hello.txt / # buildkit");

    // Layer contents: the directory's contents (not the directory), numeric root ownership.
    let first = layer_entries(root.path(), layers[0]["digest"].as_str().unwrap());
    assert_eq!(
        first.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["hello.txt"]
    );
    let second = layer_entries(root.path(), layers[1]["digest"].as_str().unwrap());
    let names: Vec<&str> = second.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "opt/",
            "opt/app/",
            "opt/app/run",
            "opt/app/sub/",
            "opt/app/sub/data.txt"
        ]
    );
    assert!(second.iter().all(|e| e.3 == 0 && e.4 == 0));
    assert_eq!(second[2].2, 0o755);
    let workdir = layer_entries(root.path(), layers[2]["digest"].as_str().unwrap());
    assert_eq!(
        workdir.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["opt/", "opt/app/", "opt/app/data/"]
    );
    let rel = layer_entries(root.path(), layers[3]["digest"].as_str().unwrap());
    let last = rel.last().unwrap();
    assert_eq!((last.0.as_str(), last.2), ("opt/app/data/rel.txt", 0o600));
    assert_eq!(ingest_files(root.path()), 0);
}

#[test]
fn images_lists_like_docker() {
    let ctx = context();
    let root = harness::tempdir();
    let id = kiln(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "app:1",
            "-t",
            "localhost:5000/team/app",
            ctx.path().to_str().unwrap(),
        ],
    )
    .ok()
    .stdout
    .trim()
    .to_owned();
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let table = kiln(root.path(), &["images"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("REPOSITORY")
            && lines[0].contains("TAG")
            && lines[0].contains("IMAGE ID")
            && lines[0].contains("CREATED")
            && lines[0].ends_with("SIZE"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("app ") && l.contains(" 1 ") && l.contains(short)),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("localhost:5000/team/app ") && l.contains("latest")),
        "{table}"
    );

    let quiet = kiln(root.path(), &["images", "-q"]).ok().stdout;
    assert_eq!(quiet, format!("{short}\n{short}\n"));

    let json = kiln(root.path(), &["images", "--format", "json"])
        .ok()
        .stdout;
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["ID"] == short && r["Size"].as_str().unwrap().ends_with('B'))
    );

    let filtered = kiln(root.path(), &["images", "app"]).ok().stdout;
    assert_eq!(filtered.lines().count(), 2, "{filtered}");
}

#[test]
fn tag_and_rmi_keep_shared_blobs_and_delete_the_rest() {
    let ctx = context();
    let root = harness::tempdir();
    let id = kiln(
        root.path(),
        &["build", "-q", "-t", "app:1", ctx.path().to_str().unwrap()],
    )
    .ok()
    .stdout
    .trim()
    .to_owned();
    kiln(root.path(), &["tag", "app:1", "app:2"]).ok();
    assert_eq!(inspect(root.path(), "app:2")["Id"], id);
    let manifest = inspect(root.path(), "app:1")["Descriptor"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();

    // Removing one of two names only untags.
    let out = kiln(root.path(), &["rmi", "app:1"]).ok();
    assert_eq!(out.stdout, "Untagged: app:1\n");
    assert!(
        root.path()
            .join("blobs/sha256")
            .join(&manifest["sha256:".len()..])
            .exists()
    );

    // By ID with several names: refused unless forced (Docker's conflict rule).
    kiln(root.path(), &["tag", "app:2", "app:3"]).ok();
    let refused = kiln(root.path(), &["rmi", &id[7..19]]).fails_with(1);
    assert!(
        refused.stderr.contains("must be forced"),
        "{}",
        refused.stderr
    );

    // The last name goes: the image's blobs go too.
    let out = kiln(root.path(), &["rmi", "-f", &id[7..19]]).ok();
    assert!(
        out.stdout.contains("Untagged: app:2") && out.stdout.contains(&format!("Deleted: {id}")),
        "{}",
        out.stdout
    );
    let left: Vec<_> = std::fs::read_dir(root.path().join("blobs/sha256"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "no blobs remain: {left:?}");
    assert_eq!(kiln(root.path(), &["images", "-q"]).ok().stdout, "");
    let missing = kiln(root.path(), &["rmi", "app:2"]).fails_with(1);
    assert!(
        missing.stderr.contains("no such image: app:2"),
        "{}",
        missing.stderr
    );
}

#[test]
fn same_inputs_same_digest_with_source_date_epoch() {
    let ctx = context();
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let (a, b) = (harness::tempdir(), harness::tempdir());
    let id_a = kiln_env(
        a.path(),
        &["build", "-q", "-t", "app", ctx.path().to_str().unwrap()],
        &epoch,
    )
    .ok()
    .stdout;
    // Touch the context: host mtimes newer than the epoch must not change anything.
    fs_err::write(ctx.path().join("hello.txt"), "hello\n").unwrap();
    let id_b = kiln_env(
        b.path(),
        &["build", "-q", "-t", "app", ctx.path().to_str().unwrap()],
        &epoch,
    )
    .ok()
    .stdout;
    assert_eq!(id_a, id_b);
    assert_eq!(
        inspect(a.path(), "app")["Descriptor"],
        inspect(b.path(), "app")["Descriptor"]
    );
    assert_eq!(inspect(a.path(), "app")["Created"], "2023-11-14T22:13:20Z");
}

#[test]
fn concurrent_tags_are_all_kept() {
    let ctx = context();
    let root = harness::tempdir();
    kiln(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "app:base",
            ctx.path().to_str().unwrap(),
        ],
    )
    .ok();
    // Sixteen kiln processes rewrite refs.json at once; the images lock serializes them, so
    // no update is lost and the file is never seen half-written.
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let mut cmd = harness::kiln_cmd(root.path());
            cmd.args(["tag", "app:base", &format!("app:p{i}")]);
            std::thread::spawn(move || cmd.output().unwrap())
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap().status.success());
    }
    let listed = kiln(root.path(), &["images", "--format", "json"])
        .ok()
        .stdout;
    let tags: std::collections::BTreeSet<String> = listed
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["Tag"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for i in 0..16 {
        assert!(
            tags.contains(&format!("p{i}")),
            "p{i} missing from {tags:?}"
        );
    }
}

#[test]
fn killed_build_leaves_a_store_that_opens_clean() {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM scratch\nCOPY big /big\n")],
    );
    // A large sparse file: the COPY layer takes a while to compress, long enough to kill it.
    fs_err::File::create(ctx.path().join("big"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let root = harness::tempdir();
    let mut child = harness::kiln_cmd(root.path())
        .args(["build", "-q", "-t", "big", ctx.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the layer is being written, then kill the process without warning.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while ingest_files(root.path()) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build finished before it could be killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no ingest file appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        ingest_files(root.path()),
        1,
        "the killed writer's temp file is still there"
    );

    // The next kiln opens the store, sweeps the dead writer's file, and sees no image.
    assert_eq!(kiln(root.path(), &["images", "-q"]).ok().stdout, "");
    assert_eq!(ingest_files(root.path()), 0);
    let blobs = std::fs::read_dir(root.path().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "no half-written blob became visible");
}
