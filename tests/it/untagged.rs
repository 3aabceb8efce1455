//! Untagged (`<none>`) images, end to end, as Docker users know them: an image whose tag moved
//! to a rebuild stays as `<none>`; archives without names (`kiln save ID`, `skopeo copy`
//! without a reference, `podman save ID`) load untagged; such images are listed, inspected,
//! tagged, saved and removed by ID (full, bare hex or short), survive `builder prune`, go with
//! `image prune`, and a push by ID asks for a name.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::{self, skip_unless};
use crate::support::{inspect, kiln, podman, save_oci_archive, tar_files, write_files};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Build `app:1` FROM scratch with `content` in a file; returns its image ID.
fn build(root: &Path, content: &str) -> String {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY f /f\nCMD [\"/f\"]\n"),
            ("f", content),
        ],
    );
    kiln(root, &["build", "-q", "-t", "app:1", p(ctx.path())])
        .ok()
        .stdout
        .trim()
        .to_owned()
}

fn short(id: &str) -> &str {
    &id[7..19]
}

/// `kiln images ARGS` lines.
fn images(root: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["images"];
    all.extend_from_slice(args);
    kiln(root, &all)
        .ok()
        .stdout
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every blob the image `query` needs is in the store at `root`.
fn blobs_present(root: &Path, query: &str) -> bool {
    let v = inspect(root, query);
    let manifest = &v["Manifest"];
    std::iter::once(&v["Descriptor"]["digest"])
        .chain(std::iter::once(&manifest["config"]["digest"]))
        .chain(
            manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| &l["digest"]),
        )
        .all(|d| {
            let hex = &d.as_str().unwrap()[7..];
            root.join("blobs/sha256").join(hex).is_file()
        })
}

#[test]
fn a_rebuilt_tag_leaves_a_none_image_used_by_id_until_removed() {
    let root = harness::tempdir();
    let r = root.path();
    let old = build(r, "one\n");
    let new = build(r, "two\n");
    assert_ne!(old, new);

    // The old image stays, as `<none>   <none>`, listed after the tagged one.
    let table = images(r, &[]);
    assert_eq!(table.len(), 3, "{table:?}");
    assert!(
        table[1].starts_with("app ") && table[1].contains(short(&new)),
        "{table:?}"
    );
    let none: Vec<&str> = table[2].split_whitespace().collect();
    assert_eq!(none[..3], ["<none>", "<none>", short(&old)], "{table:?}");
    let digests = images(r, &["--digests"]);
    let words: Vec<&str> = digests[2].split_whitespace().collect();
    assert_eq!(
        words[..4],
        ["<none>", "<none>", "<none>", short(&old)],
        "{digests:?}"
    );
    assert_eq!(images(r, &["-f", "dangling=true", "-q"]), [short(&old)]);
    assert_eq!(
        images(r, &["--filter", "dangling=false", "-q", "--no-trunc"]),
        [new.as_str()]
    );
    assert_eq!(images(r, &["-q", "app"]), [short(&new)]);
    let json: Value =
        serde_json::from_str(&images(r, &["--format", "json", "-f", "dangling=true"])[0]).unwrap();
    assert_eq!(
        (&json["Repository"], &json["Tag"]),
        (&"<none>".into(), &"<none>".into())
    );
    let run = kiln(r, &["images", "-f", "label=x"]).fails_with(1);
    assert!(run.stderr.contains("unsupported filter"), "{}", run.stderr);

    // Inspected by full ID, bare hex, short ID and a 4-digit prefix: no names.
    for q in [
        old.clone(),
        old[7..].to_owned(),
        short(&old).to_owned(),
        old[7..11].to_owned(),
    ] {
        let v = inspect(r, &q);
        assert_eq!(v["Id"], old.as_str(), "{q}");
        assert_eq!(v["RepoTags"], serde_json::json!([]), "{q}");
        assert_eq!(v["RepoDigests"], serde_json::json!([]), "{q}");
    }
    let run = kiln(r, &["image", "inspect", &old[7..10]]).fails_with(1);
    assert!(run.stderr.contains("no such image"), "{}", run.stderr);

    // Build cache pruning keeps what an untagged image uses.
    kiln(r, &["builder", "prune", "-a", "-f"]).ok();
    assert!(blobs_present(r, short(&old)));
    assert!(blobs_present(r, "app:1"));

    // A push needs a name; refused before any network traffic.
    let run = kiln(r, &["push", short(&old)]).fails_with(1);
    assert!(run.stderr.contains("a push needs a name"), "{}", run.stderr);

    // Saved by ID: an archive without names, which loads untagged elsewhere.
    let out = harness::tempdir();
    let tar = out.path().join("by-id.tar");
    kiln(r, &["save", "-o", p(&tar), short(&old)]).ok();
    let files = tar_files(&fs_err::read(&tar).unwrap());
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert!(
        manifest[0]["RepoTags"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{manifest}"
    );
    let fresh = harness::tempdir();
    let run = kiln(fresh.path(), &["load", "-i", p(&tar)]).ok();
    assert_eq!(run.stdout, format!("Loaded image ID: {old}\n"));
    assert_eq!(images(fresh.path(), &["-q", "--no-trunc"]), [old.as_str()]);

    // Tagged by ID it is a named image again; a 64-hex name is refused.
    let run = kiln(r, &["tag", short(&old), &old[7..]]).fails_with(1);
    assert!(run.stderr.contains("64-byte hexadecimal"), "{}", run.stderr);
    kiln(r, &["tag", short(&old), "old:1"]).ok();
    assert!(images(r, &["-q", "-f", "dangling=true"]).is_empty());
    assert_eq!(inspect(r, "old:1")["Id"], old.as_str());

    // Its last name removed, the image goes (it does not turn into `<none>`).
    let run = kiln(r, &["rmi", "old:1"]).ok();
    assert_eq!(run.stdout, format!("Untagged: old:1\nDeleted: {old}\n"));
    let run = kiln(r, &["image", "inspect", short(&old)]).fails_with(1);
    assert!(run.stderr.contains("no such image"), "{}", run.stderr);

    // Loaded back untagged, then removed by ID: just `Deleted:`.
    let run = kiln(r, &["load", "-i", p(&tar)]).ok();
    assert_eq!(run.stdout, format!("Loaded image ID: {old}\n"));
    let run = kiln(r, &["rmi", &old]).ok();
    assert_eq!(run.stdout, format!("Deleted: {old}\n"));
    assert_eq!(images(r, &["-q"]), [short(&new)]);
    assert!(blobs_present(r, "app:1"));

    // A load that moves a name leaves the old image untagged, as `docker load` says.
    kiln(r, &["tag", "app:1", "keep:1"]).ok();
    let other = harness::tempdir();
    let newer = build(other.path(), "three\n");
    let newer_tar = out.path().join("newer.tar");
    kiln(other.path(), &["save", "-o", p(&newer_tar), "app:1"]).ok();
    let run = kiln(r, &["load", "-i", p(&newer_tar)]).ok();
    assert_eq!(
        run.stdout,
        format!(
            "The image app:1 already exists, renaming the old one with ID {new} to empty string\nLoaded image: app:1\n"
        )
    );
    // keep:1 still names the old one; once it moves too, the old image is `<none>`.
    assert!(images(r, &["-q", "-f", "dangling=true"]).is_empty());
    kiln(r, &["tag", "app:1", "keep:1"]).ok();
    assert_eq!(
        images(r, &["-q", "-f", "dangling=true", "--no-trunc"]),
        [new.as_str()]
    );
    assert_eq!(inspect(r, "keep:1")["Id"], newer.as_str());

    // `image prune` removes the dangling image (not without a yes), and only that one.
    let (run, _) = crate::support::kiln_stdin(r, &["image", "prune"], b"n\n");
    assert_eq!(run.ok().stdout, "Total reclaimed space: 0B\n");
    let run = kiln(r, &["image", "prune", "-f"]).ok();
    assert!(
        run.stdout.starts_with(&format!(
            "Deleted Images:\ndeleted: {new}\n\nTotal reclaimed space: "
        )),
        "{}",
        run.stdout
    );
    assert_eq!(
        images(r, &["-q", "--no-trunc"]),
        [newer.as_str(), newer.as_str()]
    );
    assert!(blobs_present(r, "keep:1"));
    let run = kiln(r, &["image", "prune", "-f"]).ok();
    assert_eq!(run.stdout, "Total reclaimed space: 0B\n");
}

#[test]
fn skopeo_archives_without_a_reference_load_untagged() {
    let skopeo = skip_unless!(harness::which("skopeo"));
    let src = harness::tempdir();
    let id = build(src.path(), "skopeo\n");
    let out = harness::tempdir();
    let kiln_tar = save_oci_archive(src.path(), out.path(), "app:1");
    for (transport, file) in [("docker-archive", "sd.tar"), ("oci-archive", "so.tar")] {
        let tar = out.path().join(file);
        harness::run_ok(Command::new(&skopeo).args([
            "--insecure-policy",
            "copy",
            "--quiet",
            &format!("oci-archive:{}", p(&kiln_tar)),
            &format!("{transport}:{}", p(&tar)),
        ]));
        let files = tar_files(&fs_err::read(&tar).unwrap());
        if transport == "oci-archive" {
            let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
            assert!(index["manifests"][0]["annotations"].is_null(), "{index}");
        }
        let fresh = harness::tempdir();
        let run = kiln(fresh.path(), &["load", "-i", p(&tar)]).ok();
        assert_eq!(
            run.stdout,
            format!("Loaded image ID: {id}\n"),
            "{transport}"
        );
        let table = images(fresh.path(), &[]);
        let words: Vec<&str> = table[1].split_whitespace().collect();
        assert_eq!(
            words[..3],
            ["<none>", "<none>", short(&id)],
            "{transport}: {table:?}"
        );
        assert_eq!(
            inspect(fresh.path(), short(&id))["Id"],
            id.as_str(),
            "{transport}"
        );
        // A second archive of the same image by ID adds no second `<none>` row.
        kiln(fresh.path(), &["load", "-i", p(&kiln_tar)]).ok();
        kiln(fresh.path(), &["rmi", "app:1"]).ok();
        let run = kiln(fresh.path(), &["load", "-i", p(&tar)]).ok();
        assert_eq!(run.stdout, format!("Loaded image ID: {id}\n"));
        assert_eq!(images(fresh.path(), &["-q"]), [short(&id)], "{transport}");
        kiln(fresh.path(), &["rmi", short(&id)]).ok();
        assert!(images(fresh.path(), &["-q"]).is_empty());
    }
}

#[test]
fn podman_round_trips_an_image_saved_by_id() {
    skip_unless!(harness::which("podman"));
    skip_unless!(harness::root_required());
    let src = harness::tempdir();
    let id = build(src.path(), "podman\n");
    let out = harness::tempdir();
    let tar = out.path().join("by-id.tar");
    kiln(src.path(), &["save", "-o", p(&tar), short(&id)]).ok();
    let storage = harness::tempdir();
    podman(storage.path(), &["load", "-q", "-i", p(&tar)]);
    let ids = podman(storage.path(), &["images", "-q", "--no-trunc"]);
    assert_eq!(ids.trim(), id, "podman lists the image by ID only");
    let back = out.path().join("back.tar");
    podman(
        storage.path(),
        &[
            "save",
            "-q",
            "--format",
            "docker-archive",
            "-o",
            p(&back),
            &id[7..],
        ],
    );
    let fresh = harness::tempdir();
    let run = kiln(fresh.path(), &["load", "-i", p(&back)]).ok();
    assert_eq!(run.stdout, format!("Loaded image ID: {id}\n"));
    assert!(blobs_present(fresh.path(), &id));
}

#[test]
fn a_build_without_a_name_leaves_a_none_image_unless_its_output_goes_elsewhere() {
    let root = harness::tempdir();
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY f /f\n"),
            ("f", "unnamed\n"),
        ],
    );
    let id = kiln(root.path(), &["build", "-q", p(ctx.path())])
        .ok()
        .stdout
        .trim()
        .to_owned();
    let listed = images(root.path(), &[]);
    assert!(
        listed
            .iter()
            .any(|l| l.starts_with("<none>") && l.contains(short(&id))),
        "{listed:?}"
    );
    kiln(root.path(), &["tag", short(&id), "named:1"]).ok();
    assert_eq!(inspect(root.path(), "named:1")["Id"], id.as_str());

    // An output to a directory keeps nothing in the store, as with buildx.
    let other = harness::tempdir();
    write_files(ctx.path(), &[("f", "elsewhere\n")]);
    let out = harness::tempdir();
    kiln(
        other.path(),
        &[
            "build",
            "-q",
            "-o",
            &format!("type=local,dest={}", p(out.path())),
            p(ctx.path()),
        ],
    )
    .ok();
    assert_eq!(images(other.path(), &["-q"]), Vec::<String>::new());
}
