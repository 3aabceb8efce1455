//! `kiln save` and `kiln load`, end to end: round trips through kiln's own archives (both
//! formats, files and pipes, a gzipped archive), kiln's archives read by podman and skopeo,
//! archives written by `docker save` (a private dockerd), `podman save` and `skopeo copy` loaded
//! by kiln, and corrupt archives refused with the store left as it was.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::harness::{self, skip_unless};
use crate::support::{
    ingest_files, inspect, kiln, kiln_stdin, podman, save_oci_archive, tar_files, write_files,
};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A store with `app:1` and `app:2` (one image, two layers, built FROM scratch) and `other:1`
/// (a second image sharing the first layer). Returns the store and the two image IDs.
fn store_with_images() -> (tempfile::TempDir, String, String) {
    let root = harness::tempdir();
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch\nLABEL made.by=kiln-it\nCOPY hello.txt /\nCOPY dir /opt/app/\nCMD [\"/opt/app/run\"]\n",
            ),
            (
                "Other.Dockerfile",
                "FROM scratch\nCOPY hello.txt /\nCOPY other.txt /\n",
            ),
            ("hello.txt", "hello\n"),
            ("other.txt", "other\n"),
            ("dir/run", "#!/bin/sh\necho run\n"),
        ],
    );
    let id = kiln(
        root.path(),
        &["build", "-q", "-t", "app:1", "-t", "app:2", p(ctx.path())],
    )
    .ok()
    .stdout
    .trim()
    .to_owned();
    let other = kiln(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "other:1",
            "-f",
            p(&ctx.path().join("Other.Dockerfile")),
            p(ctx.path()),
        ],
    )
    .ok()
    .stdout
    .trim()
    .to_owned();
    (root, id, other)
}

/// A tar of `files` (in order).
fn make_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// Image ID and manifest digest a name points at.
fn id_and_digest(root: &Path, name: &str) -> (String, String) {
    let v = inspect(root, name);
    (
        v["Id"].as_str().unwrap().to_owned(),
        v["Descriptor"]["digest"].as_str().unwrap().to_owned(),
    )
}

/// The manifest digest `index.json` of an archive gives (first entry).
fn index_digest(files: &BTreeMap<String, Vec<u8>>) -> String {
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

/// What must not change when a load fails: blob names, refs, no ingest leftovers.
fn store_state(root: &Path) -> (Vec<String>, String) {
    let mut blobs: Vec<String> = fs_err::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    let refs = fs_err::read_to_string(root.join("refs.json")).unwrap_or_default();
    (blobs, refs)
}

#[test]
fn save_then_load_round_trips_both_formats() {
    let (src, id, other_id) = store_with_images();
    let out = harness::tempdir();
    let (_, oci_digest) = id_and_digest(src.path(), "app:1");

    // docker-archive: `app` (no tag) saves every tag of the repository; with a second image.
    let docker_tar = out.path().join("d.tar");
    kiln(
        src.path(),
        &["save", "-o", p(&docker_tar), "app", "other:1"],
    )
    .ok();
    let files = tar_files(&fs_err::read(&docker_tar).unwrap());
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 2, "{manifest}");
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["app:1", "app:2"])
    );
    assert_eq!(manifest[1]["RepoTags"], serde_json::json!(["other:1"]));
    let repos: Value = serde_json::from_slice(&files["repositories"]).unwrap();
    assert!(
        repos["app"]["1"].is_string() && repos["other"]["1"].is_string(),
        "{repos}"
    );
    let docker_manifest_digest = index_digest(&files);

    let fresh = harness::tempdir();
    let run = kiln(fresh.path(), &["load", "-i", p(&docker_tar)]).ok();
    assert_eq!(
        run.stdout,
        "Loaded image: app:1\nLoaded image: app:2\nLoaded image: other:1\n"
    );
    assert_eq!(
        id_and_digest(fresh.path(), "app:2"),
        (id.clone(), docker_manifest_digest)
    );
    assert_eq!(id_and_digest(fresh.path(), "other:1").0, other_id);
    assert_eq!(ingest_files(fresh.path()), 0);
    // The loaded image is a usable base.
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM app:1\nCOPY x /x\n"), ("x", "x")],
    );
    kiln(
        fresh.path(),
        &["build", "-q", "-t", "derived", p(ctx.path())],
    )
    .ok();

    // oci-archive through a pipe: the manifest digest survives as well.
    let (run, oci_bytes) = kiln_stdin(
        src.path(),
        &["save", "--format", "oci-archive", "app:1"],
        b"",
    );
    run.ok();
    let oci_files = tar_files(&oci_bytes);
    assert!(oci_files.contains_key("oci-layout") && !oci_files.contains_key("manifest.json"));
    let index: Value = serde_json::from_slice(&oci_files["index.json"]).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/app:1"
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    let fresh = harness::tempdir();
    let (run, _) = kiln_stdin(fresh.path(), &["load"], &oci_bytes);
    assert_eq!(run.ok().stdout, "Loaded image: app:1\n");
    assert_eq!(
        id_and_digest(fresh.path(), "app:1"),
        (id.clone(), oci_digest.clone())
    );

    // A gzipped archive on stdin, as `docker load` accepts it; loading again changes nothing.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&oci_bytes).unwrap();
    let gz = gz.finish().unwrap();
    let (run, _) = kiln_stdin(fresh.path(), &["load", "-q"], &gz);
    assert_eq!(run.ok().stdout, "Loaded image: app:1\n");
    assert_eq!(id_and_digest(fresh.path(), "app:1"), (id, oci_digest));

    // An image missing from the store is an error, and nothing is written.
    let missing = out.path().join("missing.tar");
    let run = kiln(src.path(), &["save", "-o", p(&missing), "nope:1"]).fails_with(1);
    assert!(run.stderr.contains("no such image"), "{}", run.stderr);
    assert!(!missing.exists());
    // Not an archive at all.
    let (run, _) = kiln_stdin(fresh.path(), &["load"], b"hello, not a tar");
    run.fails_with(1);
}

#[test]
fn kiln_archives_are_read_by_podman_and_skopeo() {
    let (src, id, _) = store_with_images();
    let out = harness::tempdir();
    let docker_tar = out.path().join("d.tar");
    let oci_tar = out.path().join("o.tar");
    kiln(src.path(), &["save", "-o", p(&docker_tar), "app:1"]).ok();
    kiln(
        src.path(),
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            p(&oci_tar),
            "app:1",
        ],
    )
    .ok();
    let (_, oci_digest) = id_and_digest(src.path(), "app:1");

    let skopeo = skip_unless!(harness::which("skopeo"));
    let v: Value = serde_json::from_str(&harness::run_ok(
        Command::new(&skopeo).args(["inspect", &format!("oci-archive:{}", p(&oci_tar))]),
    ))
    .unwrap();
    assert_eq!(v["Digest"], oci_digest.as_str());
    assert_eq!(v["Labels"]["made.by"], "kiln-it");
    let v: Value = serde_json::from_str(&harness::run_ok(Command::new(&skopeo).args([
        "inspect",
        "--config",
        &format!("docker-archive:{}", p(&docker_tar)),
    ])))
    .unwrap();
    assert_eq!(v["config"]["Labels"]["made.by"], "kiln-it");

    skip_unless!(harness::which("podman"));
    skip_unless!(harness::root_required());
    let storage = harness::tempdir();
    let loaded = podman(storage.path(), &["load", "-i", p(&docker_tar)]);
    assert!(loaded.contains("app:1"), "{loaded}");
    let loaded = podman(storage.path(), &["load", "-i", p(&oci_tar)]);
    assert!(loaded.contains("docker.io/library/app:1"), "{loaded}");
    let v: Value = serde_json::from_str(&podman(
        storage.path(),
        &["image", "inspect", "docker.io/library/app:1"],
    ))
    .unwrap();
    assert_eq!(v[0]["Id"], &id[7..]);
}

#[test]
fn docker_save_archives_load_into_kiln() {
    let daemon = skip_unless!(harness::docker::Dockerd::start());
    let (src, id, other_id) = store_with_images();
    let out = harness::tempdir();
    let kiln_tar = out.path().join("k.tar");
    kiln(
        src.path(),
        &["save", "-o", p(&kiln_tar), "app:1", "other:1"],
    )
    .ok();
    let loaded = harness::run_ok(daemon.docker().args(["load", "-i", p(&kiln_tar)]));
    assert!(
        loaded.contains("app:1") && loaded.contains("other:1"),
        "{loaded}"
    );

    let docker_tar = out.path().join("docker.tar");
    harness::run_ok(
        daemon
            .docker()
            .args(["tag", "app:1", "localhost:5000/ns/app:v2"]),
    );
    harness::run_ok(daemon.docker().args([
        "save",
        "-o",
        p(&docker_tar),
        "app:1",
        "localhost:5000/ns/app:v2",
        "other:1",
    ]));
    let files = tar_files(&fs_err::read(&docker_tar).unwrap());
    // dockerd 20.10's legacy layout: `<v1 id>/layer.tar`, `<config hex>.json`, no OCI layout.
    assert!(
        files.keys().any(|k| k.ends_with("/layer.tar")),
        "{:?}",
        files.keys()
    );
    assert!(
        files.contains_key(&format!("{}.json", &id[7..])),
        "{:?}",
        files.keys()
    );

    let fresh = harness::tempdir();
    let run = kiln(fresh.path(), &["load", "-i", p(&docker_tar)]).ok();
    for name in ["app:1", "localhost:5000/ns/app:v2", "other:1"] {
        assert!(
            run.stdout.contains(&format!("Loaded image: {name}\n")),
            "{}",
            run.stdout
        );
    }
    assert_eq!(id_and_digest(fresh.path(), "app:1").0, id);
    assert_eq!(
        id_and_digest(fresh.path(), "localhost:5000/ns/app:v2").0,
        id
    );
    assert_eq!(id_and_digest(fresh.path(), "other:1").0, other_id);
    // Docker keeps layers uncompressed; so does the manifest kiln makes for them.
    let manifest = crate::support::manifest_of(fresh.path(), "app:1");
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar"
    );

    // Saved by ID only: no name in the archive; kept as an untagged image, as Docker does.
    let by_id = out.path().join("by-id.tar");
    harness::run_ok(daemon.docker().args(["save", "-o", p(&by_id), &id]));
    let fresh = harness::tempdir();
    let run = kiln(fresh.path(), &["load", "-i", p(&by_id)]).ok();
    assert_eq!(run.stdout, format!("Loaded image ID: {id}\n"));
    let listed = kiln(fresh.path(), &["images"]).ok().stdout;
    let row: Vec<&str> = listed.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["<none>", "<none>", &id[7..19]], "{listed}");
    let v = inspect(fresh.path(), &id[7..19]);
    assert_eq!(
        (&v["Id"], &v["RepoTags"]),
        (&Value::from(id.as_str()), &serde_json::json!([]))
    );

    // And back: kiln saves it by ID, dockerd loads it as an image without a name.
    harness::run_ok(daemon.docker().args(["rmi", "-f", &id]));
    let back = out.path().join("back.tar");
    kiln(fresh.path(), &["save", "-o", p(&back), &id[7..19]]).ok();
    let loaded = harness::run_ok(daemon.docker().args(["load", "-i", p(&back)]));
    assert_eq!(loaded.trim(), format!("Loaded image ID: {id}"));
    let listed = harness::run_ok(daemon.docker().args([
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}} {{.Tag}} {{.ID}}",
    ]));
    assert!(
        listed.lines().any(|l| l == format!("<none> <none> {id}")),
        "{listed}"
    );
}

#[test]
fn podman_save_archives_load_into_kiln() {
    skip_unless!(harness::which("podman"));
    skip_unless!(harness::root_required());
    let (src, id, _) = store_with_images();
    let out = harness::tempdir();
    let kiln_tar = save_oci_archive(src.path(), out.path(), "app:1");
    let storage = harness::tempdir();
    podman(storage.path(), &["load", "-i", p(&kiln_tar)]);
    for (format, name) in [("docker-archive", "pd.tar"), ("oci-archive", "po.tar")] {
        let tar = out.path().join(name);
        podman(
            storage.path(),
            &[
                "save",
                "-q",
                "--format",
                format,
                "-o",
                p(&tar),
                "docker.io/library/app:1",
            ],
        );
        let fresh = harness::tempdir();
        let run = kiln(fresh.path(), &["load", "-i", p(&tar)]).ok();
        assert_eq!(run.stdout, "Loaded image: app:1\n", "{format}");
        assert_eq!(id_and_digest(fresh.path(), "app:1").0, id, "{format}");
        if format == "oci-archive" {
            // podman's manifest is kept as it is in the archive.
            let files = tar_files(&fs_err::read(&tar).unwrap());
            assert_eq!(id_and_digest(fresh.path(), "app:1").1, index_digest(&files));
        }
    }
}

#[test]
fn skopeo_copy_archives_load_into_kiln() {
    let skopeo = skip_unless!(harness::which("skopeo"));
    let (src, id, _) = store_with_images();
    let out = harness::tempdir();
    let kiln_tar = save_oci_archive(src.path(), out.path(), "app:1");
    for (transport, file, name) in [
        ("docker-archive", "sd.tar", "localhost/sk:1"),
        ("oci-archive", "so.tar", "localhost/sk:2"),
    ] {
        let tar = out.path().join(file);
        harness::run_ok(Command::new(&skopeo).args([
            "--insecure-policy",
            "copy",
            "--quiet",
            &format!("oci-archive:{}", p(&kiln_tar)),
            &format!("{transport}:{}:{name}", p(&tar)),
        ]));
        let fresh = harness::tempdir();
        let run = kiln(fresh.path(), &["load", "-i", p(&tar)]).ok();
        assert_eq!(run.stdout, format!("Loaded image: {name}\n"), "{transport}");
        assert_eq!(id_and_digest(fresh.path(), name).0, id, "{transport}");
    }
}

#[test]
fn corrupt_archives_are_refused_and_the_store_is_unchanged() {
    let (src, _, _) = store_with_images();
    let out = harness::tempdir();
    let docker_tar = out.path().join("d.tar");
    kiln(src.path(), &["save", "-o", p(&docker_tar), "app:1"]).ok();
    let bytes = fs_err::read(&docker_tar).unwrap();
    let files = tar_files(&bytes);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let layer_paths: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    let config_path = manifest[0]["Config"].as_str().unwrap().to_owned();
    let config: Value = serde_json::from_slice(&files[&config_path]).unwrap();

    // The target store already holds an image, which must stay exactly as it is.
    let target = harness::tempdir();
    let (other_bytes_run, other_tar) = kiln_stdin(src.path(), &["save", "other:1"], b"");
    other_bytes_run.ok();
    kiln_stdin(target.path(), &["load"], &other_tar).0.ok();
    let before = store_state(target.path());

    let refused = |what: &str, archive: &[u8], expect: &str| {
        let (run, _) = kiln_stdin(target.path(), &["load"], archive);
        let run = run.fails_with(1);
        assert!(run.stderr.contains(expect), "{what}: {}", run.stderr);
        assert_eq!(store_state(target.path()), before, "{what}");
        assert_eq!(ingest_files(target.path()), 0, "{what}");
    };

    // 1. A flipped byte in a layer blob of kiln's archive (named by digest).
    let mut flipped = files.clone();
    let layer = flipped.get_mut(&layer_paths[1]).unwrap();
    let mid = layer.len() / 2;
    layer[mid] ^= 0x01;
    let flipped: Vec<(String, Vec<u8>)> = flipped.into_iter().collect();
    refused("flipped byte in a blob", &make_tar(&flipped), "is corrupt");

    // A Docker 20.10-style archive (uncompressed layer tars under v1 ids, config by digest).
    let uncompressed: Vec<Vec<u8>> = layer_paths
        .iter()
        .map(|l| {
            let mut tar = Vec::new();
            flate2::read::MultiGzDecoder::new(&files[l][..])
                .read_to_end(&mut tar)
                .unwrap();
            tar
        })
        .collect();
    let legacy = |config: &Value, layers: &[Vec<u8>]| {
        let config_bytes = serde_json::to_vec(config).unwrap();
        let config_name = format!("{}.json", &sha256(&config_bytes)[7..]);
        let layer_names: Vec<String> = (0..layers.len())
            .map(|i| format!("{i:064x}/layer.tar"))
            .collect();
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": ["legacy:1"],
            "Layers": layer_names,
        }]);
        let mut entries: Vec<(String, Vec<u8>)> = layer_names
            .iter()
            .cloned()
            .zip(layers.iter().cloned())
            .collect();
        entries.push((config_name, config_bytes));
        entries.push((
            "manifest.json".to_owned(),
            serde_json::to_vec(&manifest).unwrap(),
        ));
        make_tar(&entries)
    };
    // The well-formed one loads (into a store of its own).
    let ok_store = harness::tempdir();
    let (run, _) = kiln_stdin(ok_store.path(), &["load"], &legacy(&config, &uncompressed));
    assert_eq!(run.ok().stdout, "Loaded image: legacy:1\n");

    // 2. A flipped byte in an uncompressed layer: its DiffID no longer matches the config.
    let mut bad_layers = uncompressed.clone();
    bad_layers[0][600] ^= 0x01;
    refused(
        "flipped byte in a layer tar",
        &legacy(&config, &bad_layers),
        "does not match the image config",
    );

    // 3. A config whose diff_ids name another layer.
    let mut wrong = config.clone();
    wrong["rootfs"]["diff_ids"][1] = Value::String(sha256(b"not this layer"));
    refused(
        "wrong diff id",
        &legacy(&wrong, &uncompressed),
        "does not match the image config",
    );

    // 4. A layer the manifest names but the archive lacks; 5. a truncated archive.
    let mut missing: Vec<(String, Vec<u8>)> = files.clone().into_iter().collect();
    missing.retain(|(p, _)| *p != layer_paths[0]);
    refused(
        "missing layer",
        &make_tar(&missing),
        "is not in the archive",
    );
    refused("truncated archive", &bytes[..bytes.len() / 2], "");
}
