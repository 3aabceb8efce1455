//! `kiln build` outputs and build-metadata flags, end to end: `--output` of every type (each
//! archive checked with an independent tool: skopeo, umoci, podman, docker, tar),
//! `--metadata-file`, `--label`, a tar context on stdin (plain and compressed), the Dockerfile on
//! stdin, `-f` outside the context, and the errors buildx gives for bad outputs.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::{self, Skip, skip_unless};
use crate::support::{
    Run, config_of, inspect, kiln, kiln_env, kiln_stdin, layer_entries, manifest_layers,
    write_files,
};

const DOCKERFILE: &str = "FROM scratch
LABEL from.dockerfile=yes overridden=dockerfile
COPY hello.txt /
COPY dir /opt/app/
CMD [\"/opt/app/run\"]
";

/// A context with [`DOCKERFILE`] and its files.
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
    ctx
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Paths (with a trailing `/` for directories) of a tar file's entries.
fn tar_paths(bytes: &[u8]) -> Vec<String> {
    tar::Archive::new(bytes)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// One file of a tar, by path.
fn tar_file(bytes: &[u8], path: &str) -> Vec<u8> {
    let mut a = tar::Archive::new(bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == path {
            let mut out = Vec::new();
            e.read_to_end(&mut out).unwrap();
            return out;
        }
    }
    panic!("{path} is not in the tar: {:?}", tar_paths(bytes));
}

fn tool(name: &str) -> Result<std::path::PathBuf, Skip> {
    harness::which(name)
}

/// `kiln build -q -o OUTPUT CONTEXT` against the store at `root`.
fn build_to(root: &Path, ctx: &Path, output: &str) -> Run {
    kiln(root, &["build", "-q", "-o", output, p(ctx)])
}

#[test]
fn oci_archive_is_an_oci_layout_read_by_skopeo_and_umoci() {
    let ctx = context();
    let root = harness::tempdir();
    let out_dir = harness::tempdir();
    let tar_path = out_dir.path().join("img.tar");
    let meta_path = out_dir.path().join("meta.json");
    let run = kiln(
        root.path(),
        &[
            "build",
            "-t",
            "app:1",
            "-o",
            &format!("type=oci,dest={}", p(&tar_path)),
            "--metadata-file",
            p(&meta_path),
            p(ctx.path()),
        ],
    )
    .ok();
    let image_id = run.stdout.trim().to_owned();
    assert!(image_id.starts_with("sha256:"), "{}", run.stdout);

    let bytes = fs_err::read(&tar_path).unwrap();
    let paths = tar_paths(&bytes);
    assert_eq!(&paths[..2], ["oci-layout", "index.json"], "{paths:?}");
    assert!(!paths.contains(&"manifest.json".to_owned()), "{paths:?}");
    let index: Value = serde_json::from_slice(&tar_file(&bytes, "index.json")).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let m = &index["manifests"][0];
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["annotations"]["io.containerd.image.name"],
        "docker.io/library/app:1"
    );
    assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], "1");
    let digest = m["digest"].as_str().unwrap().to_owned();
    // Every blob the manifest names is in the archive, and the config is the image ID.
    let manifest: Value =
        serde_json::from_slice(&tar_file(&bytes, &format!("blobs/sha256/{}", &digest[7..])))
            .unwrap();
    assert_eq!(manifest["config"]["digest"], image_id.as_str());
    for l in manifest["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        assert!(paths.contains(&format!("blobs/sha256/{}", &d[7..])), "{d}");
    }

    // --metadata-file: the same manifest, as buildx writes it.
    let meta: Value = serde_json::from_slice(&fs_err::read(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], digest.as_str());
    assert_eq!(meta["containerimage.config.digest"], image_id.as_str());
    assert_eq!(meta["containerimage.descriptor"]["digest"], digest.as_str());
    assert_eq!(
        meta["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(meta["image.name"], "docker.io/library/app:1");

    // With an `oci` output only, the name is not set in the store (buildx: -t names the
    // outputs that carry names).
    let images = kiln(root.path(), &["images", "--format", "json"]).ok();
    assert!(!images.stdout.contains("app"), "{}", images.stdout);

    // skopeo reads the archive and sees the same manifest digest and config.
    skip_unless!(tool("skopeo"));
    let inspected = harness::run_ok(
        Command::new("skopeo").args(["inspect", &format!("oci-archive:{}", p(&tar_path))]),
    );
    let v: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(v["Digest"], digest.as_str());
    assert_eq!(v["Labels"]["from.dockerfile"], "yes");

    // umoci unpacks the layout (extracted from the tar) into a bundle with our files.
    skip_unless!(tool("umoci"));
    let layout = out_dir.path().join("layout");
    fs_err::create_dir_all(&layout).unwrap();
    tar::Archive::new(&bytes[..]).unpack(&layout).unwrap();
    let bundle = out_dir.path().join("bundle");
    let mut umoci = Command::new("umoci");
    umoci.args(["unpack", "--image", &format!("{}:1", p(&layout))]);
    if !rustix::process::geteuid().is_root() {
        umoci.arg("--rootless");
    }
    harness::run_ok(umoci.arg(&bundle));
    assert_eq!(
        fs_err::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        fs_err::read_to_string(bundle.join("rootfs/opt/app/sub/data.txt")).unwrap(),
        "data"
    );
}

#[test]
fn archives_are_reproducible_and_image_outputs_tag_the_store() {
    let ctx = context();
    let root = harness::tempdir();
    let out_dir = harness::tempdir();
    let a = out_dir.path().join("a.tar");
    let b = out_dir.path().join("b.tar");
    for dest in [&a, &b] {
        kiln_env(
            root.path(),
            &[
                "build",
                "-q",
                "-o",
                &format!("type=oci,dest={},name=x:1", p(dest)),
                "-o",
                "type=image,\"name=named:1,named:2\"",
                p(ctx.path()),
            ],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        )
        .ok();
    }
    let (a_bytes, b_bytes) = (fs_err::read(&a).unwrap(), fs_err::read(&b).unwrap());
    assert!(
        a_bytes == b_bytes,
        "the same image gives the same archive bytes ({} and {} bytes)",
        a_bytes.len(),
        b_bytes.len()
    );
    // `name=` of the oci output is used without -t; the image output names the store.
    let index: Value =
        serde_json::from_slice(&tar_file(&fs_err::read(&a).unwrap(), "index.json")).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/x:1"
    );
    assert_eq!(
        inspect(root.path(), "named:1")["Id"],
        inspect(root.path(), "named:2")["Id"]
    );
}

#[test]
fn docker_archive_is_read_by_skopeo_and_loaded_by_podman() {
    let ctx = context();
    let root = harness::tempdir();
    let out_dir = harness::tempdir();
    let tar_path = out_dir.path().join("docker.tar");
    let meta_path = out_dir.path().join("meta.json");
    let run = kiln(
        root.path(),
        &[
            "build",
            "-t",
            "app:2",
            "--label",
            "overridden=cli",
            "--output",
            &format!("type=docker,dest={}", p(&tar_path)),
            "--metadata-file",
            p(&meta_path),
            p(ctx.path()),
        ],
    )
    .ok();
    let image_id = run.stdout.trim().to_owned();

    let bytes = fs_err::read(&tar_path).unwrap();
    let docker_manifest: Value =
        serde_json::from_slice(&tar_file(&bytes, "manifest.json")).unwrap();
    let entry = &docker_manifest[0];
    assert_eq!(entry["RepoTags"][0], "app:2");
    assert_eq!(
        entry["Config"],
        format!("blobs/sha256/{}", &image_id[7..]).as_str()
    );
    let layers = entry["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    // The index points at a Docker schema 2 manifest (BuildKit's default for this exporter).
    let index: Value = serde_json::from_slice(&tar_file(&bytes, "index.json")).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest: Value =
        serde_json::from_slice(&tar_file(&bytes, &format!("blobs/sha256/{}", &digest[7..])))
            .unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let meta: Value = serde_json::from_slice(&fs_err::read(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], digest.as_str());

    skip_unless!(tool("skopeo"));
    let inspected = harness::run_ok(
        Command::new("skopeo").args(["inspect", &format!("docker-archive:{}", p(&tar_path))]),
    );
    let v: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(v["Labels"]["overridden"], "cli");
    assert_eq!(v["Labels"]["from.dockerfile"], "yes");
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);

    // podman, with a private storage root, loads it under its name with our image ID.
    skip_unless!(tool("podman"));
    skip_unless!(harness::root_required());
    let storage = harness::tempdir();
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(storage.path().join("root"))
            .arg("--runroot")
            .arg(storage.path().join("run"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none"])
            .args(args);
        harness::run_ok(&mut cmd)
    };
    let loaded = podman(&["load", "-i", p(&tar_path)]);
    assert!(loaded.contains("app:2"), "{loaded}");
    let inspected = podman(&["image", "inspect", "docker.io/library/app:2"]);
    let v: Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(v[0]["Id"], &image_id[7..]);
    assert_eq!(v[0]["Config"]["Labels"]["overridden"], "cli");
}

#[test]
fn docker_archive_loads_into_docker() {
    // A private daemon (its own roots and socket, no network changes), stopped at the end.
    let daemon = skip_unless!(harness::docker::Dockerd::start());
    let ctx = context();
    let root = harness::tempdir();
    let out_dir = harness::tempdir();
    let tar_path = out_dir.path().join("docker.tar");
    let name = "kiln-it-output:1";
    let run = kiln(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            name,
            "-o",
            &format!("type=docker,dest={}", p(&tar_path)),
            p(ctx.path()),
        ],
    )
    .ok();
    let loaded = harness::run_ok(daemon.docker().args(["load", "-i", p(&tar_path)]));
    let inspected = harness::run_ok(
        daemon
            .docker()
            .args(["image", "inspect", "--format", "{{.Id}}", name]),
    );
    assert!(loaded.contains(name), "{loaded}");
    assert_eq!(inspected.trim(), run.stdout.trim());
}

#[test]
fn local_output_writes_the_root_filesystem_into_a_directory() {
    let ctx = context();
    let root = harness::tempdir();
    let out_dir = harness::tempdir();
    // `-o DIR` is `type=local,dest=DIR`; a missing directory is created.
    let dest = out_dir.path().join("new/rootfs");
    kiln(root.path(), &["build", "-q", "-o", p(&dest), p(ctx.path())]).ok();
    assert_eq!(
        fs_err::read_to_string(dest.join("hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        fs_err::read_to_string(dest.join("opt/app/sub/data.txt")).unwrap(),
        "data"
    );
    // No staging directory is left next to it.
    let siblings: Vec<_> = fs_err::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, ["rootfs"]);

    // Into an existing directory: the image's files replace those of the same name, others
    // stay, and a symlink in the way is replaced rather than followed.
    let existing = out_dir.path().join("existing");
    let outside = out_dir.path().join("outside");
    fs_err::create_dir_all(&outside).unwrap();
    write_files(&existing, &[("hello.txt", "old"), ("mine.txt", "mine")]);
    std::os::unix::fs::symlink(&outside, existing.join("opt")).unwrap();
    kiln(
        root.path(),
        &[
            "build",
            "-q",
            "--output",
            &format!("type=local,dest={}", p(&existing)),
            p(ctx.path()),
        ],
    )
    .ok();
    assert_eq!(
        fs_err::read_to_string(existing.join("hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        fs_err::read_to_string(existing.join("mine.txt")).unwrap(),
        "mine"
    );
    assert!(existing.join("opt").is_dir() && !existing.join("opt").is_symlink());
    assert_eq!(fs_err::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn local_output_applies_deletions_of_later_layers() {
    skip_unless!(harness::root_required());
    let rootfs = skip_unless!(harness::rootfs::busybox_rootfs());
    let root = harness::tempdir();
    let base = harness::tempdir();
    write_files(
        base.path(),
        &[("Dockerfile", "FROM scratch\nCOPY rootfs/ /\n")],
    );
    crate::support::copy_tree(rootfs.path(), &base.path().join("rootfs"));
    kiln(
        root.path(),
        &["build", "-q", "-t", "busybox:local", p(base.path())],
    )
    .ok();
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN mkdir -p /gone && echo x > /gone/f && echo kept > /kept\nRUN rm -r /gone\n",
        )],
    );
    let out_dir = harness::tempdir();
    let dest = out_dir.path().join("fs");
    build_to(
        root.path(),
        ctx.path(),
        &format!("type=local,dest={}", p(&dest)),
    )
    .ok();
    assert_eq!(fs_err::read_to_string(dest.join("kept")).unwrap(), "kept\n");
    assert!(!dest.join("gone").exists(), "the whiteout deleted /gone");
    assert!(dest.join("bin/busybox").is_file());
}

#[test]
fn tar_output_is_the_root_filesystem_as_a_tar() {
    let ctx = context();
    let root = harness::tempdir();
    let out_dir = harness::tempdir();
    let dest = out_dir.path().join("fs.tar");
    build_to(
        root.path(),
        ctx.path(),
        &format!("type=tar,dest={}", p(&dest)),
    )
    .ok();
    let bytes = fs_err::read(&dest).unwrap();
    let paths = tar_paths(&bytes);
    assert_eq!(
        paths,
        [
            "hello.txt",
            "opt/",
            "opt/app/",
            "opt/app/run",
            "opt/app/sub/",
            "opt/app/sub/data.txt"
        ]
    );
    assert_eq!(tar_file(&bytes, "opt/app/sub/data.txt"), b"data");
    // GNU tar reads it too.
    skip_unless!(tool("tar"));
    let listing = harness::run_ok(Command::new("tar").args(["-tvf", p(&dest)]));
    assert!(listing.contains("opt/app/run"), "{listing}");

    // `-o -`: the tar on stdout, and no image ID there. The store's temp dir is left empty.
    let (run, stdout) = kiln_stdin(root.path(), &["build", "-q", "-o", "-", p(ctx.path())], b"");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(tar_paths(&stdout), paths);
    let tmp = root.path().join("tmp");
    assert_eq!(
        fs_err::read_dir(&tmp).map(|d| d.count()).unwrap_or(0),
        0,
        "temp trees are removed"
    );
}

#[test]
fn metadata_file_and_labels_for_a_store_build() {
    let ctx = context();
    let root = harness::tempdir();
    let out_dir = harness::tempdir();
    let meta_path = out_dir.path().join("sub/meta.json");
    fs_err::create_dir_all(meta_path.parent().unwrap()).unwrap();
    let run = kiln(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "lab:1",
            "-t",
            "lab",
            "--label",
            "org.example.a=1",
            "--label",
            "overridden=cli",
            "--label",
            "empty",
            "--metadata-file",
            p(&meta_path),
            p(ctx.path()),
        ],
    )
    .ok();
    let labels = &config_of(root.path(), "lab:1")["config"]["Labels"];
    assert_eq!(labels["org.example.a"], "1");
    assert_eq!(labels["overridden"], "cli", "--label wins over LABEL");
    assert_eq!(labels["from.dockerfile"], "yes");
    assert_eq!(labels["empty"], "");
    // Labels add no history entry (BuildKit sets them on the final image config).
    let history = config_of(root.path(), "lab:1")["history"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(history, 4);

    let meta: Value = serde_json::from_slice(&fs_err::read(&meta_path).unwrap()).unwrap();
    let image = inspect(root.path(), "lab:1");
    assert_eq!(meta["containerimage.config.digest"], run.stdout.trim());
    assert_eq!(meta["containerimage.digest"], image["Descriptor"]["digest"]);
    assert_eq!(
        meta["image.name"],
        "docker.io/library/lab:1,docker.io/library/lab:latest"
    );
    let keys: Vec<&String> = meta.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "containerimage.config.digest",
            "containerimage.descriptor",
            "containerimage.digest",
            "image.name"
        ]
    );

    // Only a filesystem output: no image digests (BuildKit's local exporter returns none).
    let dest = out_dir.path().join("fs");
    kiln(
        root.path(),
        &[
            "build",
            "-q",
            "-o",
            p(&dest),
            "--metadata-file",
            p(&meta_path),
            p(ctx.path()),
        ],
    )
    .ok();
    let meta: Value = serde_json::from_slice(&fs_err::read(&meta_path).unwrap()).unwrap();
    assert_eq!(meta, serde_json::json!({}));
}

/// A tar of `files` (path, content).
fn tar_bytes(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, content.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// The paths in the last layer of `image`.
fn last_layer_paths(root: &Path, image: &str) -> Vec<String> {
    let layers = manifest_layers(root, image);
    layer_entries(root, layers.last().unwrap())
        .into_iter()
        .map(|e| e.0)
        .collect()
}

#[test]
fn a_tar_context_on_stdin_plain_or_compressed() {
    let root = harness::tempdir();
    let tar = tar_bytes(&[
        ("Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
        (
            "build/other.Dockerfile",
            "FROM scratch\nCOPY a.txt /other/\n",
        ),
        ("a.txt", "a"),
        ("dir/b.txt", "b"),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    for (what, input) in [("plain", &tar), ("gzip", &gz)] {
        let tag = format!("stdin-{what}:1");
        let (run, _) = kiln_stdin(root.path(), &["build", "-q", "-t", &tag, "-"], input);
        assert_eq!(run.code, Some(0), "{what}: {}", run.stderr);
        let paths = last_layer_paths(root.path(), &tag);
        assert!(paths.iter().any(|p| p == "ctx/a.txt"), "{what}: {paths:?}");
        assert!(
            paths.iter().any(|p| p == "ctx/dir/b.txt"),
            "{what}: {paths:?}"
        );
    }
    // `-f` names a Dockerfile inside the archive.
    let (run, _) = kiln_stdin(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "stdin-f:1",
            "-f",
            "build/other.Dockerfile",
            "-",
        ],
        &gz,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        last_layer_paths(root.path(), "stdin-f:1"),
        ["other/", "other/a.txt"]
    );
    // The extracted contexts are gone.
    assert_eq!(
        fs_err::read_dir(root.path().join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

#[test]
fn a_dockerfile_on_stdin_builds_with_an_empty_context() {
    let root = harness::tempdir();
    let (run, _) = kiln_stdin(
        root.path(),
        &["build", "-q", "-t", "nocontext:1", "-"],
        b"FROM scratch\nLABEL via=stdin\n",
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        config_of(root.path(), "nocontext:1")["config"]["Labels"]["via"],
        "stdin"
    );
    // There is nothing to COPY from.
    let (run, _) = kiln_stdin(
        root.path(),
        &["build", "-q", "-"],
        b"FROM scratch\nCOPY a.txt /\n",
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("a.txt"), "{}", run.stderr);
    // stdin cannot be both.
    let (run, _) = kiln_stdin(root.path(), &["build", "-f", "-", "-"], b"FROM scratch\n");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("can't use stdin for both"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_dockerfile_outside_the_context() {
    let ctx = context();
    let elsewhere = harness::tempdir();
    write_files(
        elsewhere.path(),
        &[("app.Dockerfile", "FROM scratch\nCOPY dir/sub /sub/\n")],
    );
    let root = harness::tempdir();
    kiln(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "outside:1",
            "-f",
            p(&elsewhere.path().join("app.Dockerfile")),
            p(ctx.path()),
        ],
    )
    .ok();
    assert_eq!(
        last_layer_paths(root.path(), "outside:1"),
        ["sub/", "sub/data.txt"]
    );
}

#[test]
fn bad_outputs_fail_before_building() {
    let ctx = context();
    let root = harness::tempdir();
    let out_dir = harness::tempdir();
    let file = out_dir.path().join("file");
    fs_err::write(&file, "x").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["type=bogus,dest=x".into()],
            "unknown output type `bogus`",
        ),
        (
            vec!["type=local".into()],
            "dest is required for local exporter",
        ),
        (vec!["type=local,dest=-".into()], "dest cannot be stdout"),
        (vec!["type=oci,dest".into()], "invalid value `dest`"),
        (vec!["dest=x,name=y".into()], "type is required"),
        (
            vec![format!("type=oci,dest={}", p(out_dir.path()))],
            "is a directory",
        ),
        (vec![format!("type=local,dest={}", p(&file))], "is a file"),
        (vec!["type=registry".into()], "tag is needed when pushing"),
        (
            vec!["type=tar,dest=-".into(), "type=oci,dest=-".into()],
            "multiple outputs configured to write to stdout",
        ),
    ];
    for (outputs, message) in cases {
        let mut args = vec!["build".to_owned()];
        for o in &outputs {
            args.push("-o".to_owned());
            args.push(o.clone());
        }
        args.push(p(ctx.path()).to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = kiln(root.path(), &args).fails_with(1);
        assert!(
            run.stderr.contains(message),
            "{outputs:?}: expected {message:?} in\n{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("COPY"),
            "{outputs:?}: failed before building\n{}",
            run.stderr
        );
    }
}

#[test]
fn a_named_image_context_replaces_from_and_copy_from() {
    let ctx = context();
    let root = harness::tempdir();
    kiln(root.path(), &["build", "-q", "-t", "base:1", p(ctx.path())]).ok();
    let other = harness::tempdir();
    write_files(
        other.path(),
        &[
            (
                "Dockerfile",
                "FROM docker.io/library/alpine:latest\nCOPY --from=alpine /hello.txt /copied.txt\n",
            ),
            ("unused", "u"),
        ],
    );
    kiln(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "named:1",
            "--build-context",
            "alpine=docker-image://base:1",
            p(other.path()),
        ],
    )
    .ok();
    let base_layers = manifest_layers(root.path(), "base:1");
    let layers = manifest_layers(root.path(), "named:1");
    assert_eq!(
        &layers[..base_layers.len()],
        &base_layers[..],
        "FROM alpine is base:1"
    );
    assert_eq!(last_layer_paths(root.path(), "named:1"), ["copied.txt"]);

    // A missing directory, and a malformed flag, fail clearly (directory contexts:
    // `build_named_context`).
    let missing = ctx.path().join("missing");
    let run = kiln(
        root.path(),
        &[
            "build",
            "-q",
            "--build-context",
            &format!("alpine={}", p(&missing)),
            p(other.path()),
        ],
    )
    .fails_with(1);
    assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);
    let run = kiln(
        root.path(),
        &["build", "-q", "--build-context", "Bad", p(other.path())],
    )
    .fails_with(1);
    assert!(
        run.stderr.contains("invalid --build-context `Bad`"),
        "{}",
        run.stderr
    );
}

#[test]
fn registry_output_pushes_and_image_push_true_too() {
    let reg = skip_unless!(harness::Registry::start());
    let host = reg.host_port();
    let ctx = context();
    let root = harness::tempdir();
    let meta_path = root.path().join("meta.json");
    kiln(
        root.path(),
        &[
            "build",
            "-q",
            "--tls-verify=false",
            "-o",
            &format!("type=registry,name={host}/reg:1"),
            "-o",
            &format!("type=image,name={host}/img:2,push=true"),
            "--metadata-file",
            p(&meta_path),
            p(ctx.path()),
        ],
    )
    .ok();
    assert_eq!(reg.tags("reg"), ["1"]);
    assert_eq!(reg.tags("img"), ["2"]);
    let meta: Value = serde_json::from_slice(&fs_err::read(&meta_path).unwrap()).unwrap();
    assert_eq!(
        meta["image.name"],
        format!("{host}/reg:1,{host}/img:2").as_str()
    );
    // The pushed manifest is the one the metadata names.
    let digest = meta["containerimage.digest"].as_str().unwrap();
    assert_eq!(reg.manifest("reg", digest).status, 200);
}
