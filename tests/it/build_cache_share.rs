//! The shared build cache end to end (issue [F] point 6): `--cache-to` exports from one store,
//! `--cache-from` in a fresh store (a new CI runner) reuses the layers without running their
//! steps; through Debian's docker-registry on 127.0.0.1 and through local directories, and
//! with skopeo moving a registry cache into a directory.
//!
//! The Dockerfiles write random bytes in RUN steps, so only a cache hit gives the same layer:
//! equal image IDs (with `SOURCE_DATE_EPOCH`) prove that nothing ran.

use std::path::Path;
use std::process::Command;

use crate::build_cache::{image_id, ran};
use crate::harness::{self, Registry, Skip, TokenServer, skip_unless};
use crate::oci_schema::{self, OciKind};
use crate::support::{Run, busybox_store, kiln_env, run_tool, write_files};

const EPOCH: (&str, &str) = ("SOURCE_DATE_EPOCH", "1700000000");

const APP: &str = "FROM busybox:local
WORKDIR /app
COPY src/ ./src/
RUN cat src/*.txt > all.txt && head -c 16 /dev/urandom > stamp
COPY conf/ /etc/app/
RUN head -c 16 /dev/urandom > /etc/app/id
";

fn app_context(dir: &Path) {
    write_files(
        dir,
        &[
            ("Dockerfile", APP),
            ("src/a.txt", "alpha\n"),
            ("src/b.txt", "beta\n"),
            ("conf/app.conf", "x=1\n"),
        ],
    );
}

/// A store with `busybox:local`, as a fresh CI runner has its base image.
fn runner() -> Result<tempfile::TempDir, Skip> {
    busybox_store(&[])
}

/// A runner's store and a context with `dockerfile`.
fn runner_with(dockerfile: &str) -> Result<(tempfile::TempDir, tempfile::TempDir), Skip> {
    let store = runner()?;
    let ctx = harness::tempdir();
    write_files(ctx.path(), &[("Dockerfile", dockerfile)]);
    Ok((store, ctx))
}

fn build(root: &Path, ctx: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["build", "--progress=plain", "-t", "app:1"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    kiln_env(root, &args, &[EPOCH])
}

/// `(records, layers, sent)` from the `exported cache to DEST: R records, L layers (S sent), …`
/// line.
fn exported(run: &Run) -> (usize, usize, usize) {
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("exported cache to "))
        .unwrap_or_else(|| panic!("no export line:\n{}", run.stderr));
    let number_before = |marker: &str| -> usize {
        let end = line
            .find(marker)
            .unwrap_or_else(|| panic!("no `{marker}` in {line}"));
        line[..end]
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number before `{marker}` in {line}"))
    };
    (
        number_before(" records, "),
        number_before(" layers ("),
        number_before(" sent)"),
    )
}

#[test]
fn a_fresh_store_reuses_a_registry_cache_without_running_steps() {
    let reg = skip_unless!(Registry::start());
    let a = skip_unless!(runner());
    let ctx = harness::tempdir();
    app_context(ctx.path());
    let cache_ref = format!("{}/ci/app:buildcache", reg.host_port());
    let to = format!("type=registry,ref={cache_ref},mode=max");
    let first = build(a.path(), ctx.path(), &["--cache-to", &to]).ok();
    assert_eq!(ran(&first).len(), 5, "{}", first.stderr);
    // Five records (WORKDIR, two COPYs, two RUNs); every layer was new to the registry.
    let (records, layers, sent) = exported(&first);
    assert_eq!((records, layers, sent), (5, 5, 5), "{}", first.stderr);

    // The registry stored it as an OCI image manifest with kiln's cache config.
    let manifest = reg.manifest("ci/app", "buildcache");
    assert_eq!(manifest.status, 200, "{}", reg.log());
    let m: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.kiln.cache.config.v1+json"
    );
    assert_eq!(m["layers"].as_array().unwrap().len(), 5);

    // A fresh runner with the cache: nothing runs, and the image is the same.
    let b = skip_unless!(runner());
    let from = format!("type=registry,ref={cache_ref}");
    let second = build(b.path(), ctx.path(), &["--cache-from", &from]).ok();
    assert!(ran(&second).is_empty(), "{}", second.stderr);
    assert_eq!(image_id(&first), image_id(&second));

    // Exporting again from the runner sends nothing: the registry has every layer.
    let again = build(
        b.path(),
        ctx.path(),
        &["--cache-from", &from, "--cache-to", &to],
    )
    .ok();
    assert_eq!(exported(&again), (5, 5, 0), "{}", again.stderr);

    // One source file changed: the steps from its COPY on run again, and the export sends
    // only the layers the registry lacks (the COPY of conf/ makes the same layer again).
    write_files(ctx.path(), &[("src/b.txt", "BETA\n")]);
    let changed = build(
        b.path(),
        ctx.path(),
        &["--cache-from", &from, "--cache-to", &to],
    )
    .ok();
    let ran_now = ran(&changed);
    assert_eq!(ran_now.len(), 4, "{}", changed.stderr);
    assert!(
        ran_now.iter().all(|s| !s.contains("WORKDIR")),
        "{ran_now:?}"
    );
    let (records, layers, sent) = exported(&changed);
    assert_eq!((records, layers), (5, 5), "{}", changed.stderr);
    assert_eq!(sent, 3, "{}", changed.stderr);
}

/// The `op` of each record of the cache tagged `latest` in the directory `dir`, sorted.
fn local_cache_ops(dir: &Path) -> Vec<String> {
    let read = |digest: &str| -> serde_json::Value {
        let path = dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap()
    };
    let index_bytes = fs_err::read(dir.join("index.json")).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index_bytes).unwrap();
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let config = read(manifest["config"]["digest"].as_str().unwrap());
    // The directory is an OCI image layout, and the cache an OCI image manifest.
    oci_schema::assert_valid(OciKind::Index, &index_bytes);
    oci_schema::assert_valid(
        OciKind::Layout,
        &fs_err::read(dir.join("oci-layout")).unwrap(),
    );
    oci_schema::assert_valid(OciKind::Manifest, manifest.to_string().as_bytes());
    let mut ops: Vec<String> = config["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let fields = r["preimage"]["fields"].as_array().unwrap();
            let op = fields.iter().find(|f| f[0] == "op").unwrap();
            op[1].as_str().unwrap().to_owned()
        })
        .collect();
    ops.sort();
    ops
}

#[test]
fn min_mode_exports_the_final_stage_and_max_mode_every_stage() {
    let (a, ctx) = skip_unless!(runner_with(
        "FROM busybox:local AS builder
RUN echo built > /artifact && echo scratch > /tmp/work
FROM busybox:local
COPY --from=builder /artifact /artifact
RUN head -c 16 /dev/urandom > /id
"
    ));
    let min_dir = harness::tempdir();
    let max_dir = harness::tempdir();
    let min_to = format!("type=local,dest={}", min_dir.path().display());
    let max_to = format!("type=local,dest={},mode=max", max_dir.path().display());
    let first = build(
        a.path(),
        ctx.path(),
        &["--cache-to", &min_to, "--cache-to", &max_to],
    )
    .ok();
    // min: the COPY and the RUN of the final stage; max: the builder's RUN too.
    assert_eq!(
        local_cache_ops(min_dir.path()),
        ["copy", "run"],
        "{}",
        first.stderr
    );
    assert_eq!(
        local_cache_ops(max_dir.path()),
        ["copy", "run", "run"],
        "{}",
        first.stderr
    );

    // With the min cache, the builder runs again (its RUN makes the same layer, so the COPY
    // and the final RUN hit); with the max cache nothing runs.
    let b = skip_unless!(runner());
    let min_from = format!("type=local,src={}", min_dir.path().display());
    let with_min = build(b.path(), ctx.path(), &["--cache-from", &min_from]).ok();
    assert_eq!(
        ran(&with_min),
        ["builder RUN echo built > /artifact && echo scratch > /tmp/work"],
        "{}",
        with_min.stderr
    );
    assert_eq!(image_id(&first), image_id(&with_min));
    let c = skip_unless!(runner());
    let max_from = format!("type=local,src={}", max_dir.path().display());
    let with_max = build(c.path(), ctx.path(), &["--cache-from", &max_from]).ok();
    assert!(ran(&with_max).is_empty(), "{}", with_max.stderr);
    assert_eq!(image_id(&first), image_id(&with_max));
}

#[test]
fn a_registry_cache_copied_by_skopeo_into_a_directory_is_a_local_cache() {
    let skopeo = skip_unless!(harness::which("skopeo"));
    let reg = skip_unless!(Registry::start());
    let a = skip_unless!(runner());
    let ctx = harness::tempdir();
    app_context(ctx.path());
    let cache_ref = format!("{}/ci/app:buildcache", reg.host_port());
    let first = build(
        a.path(),
        ctx.path(),
        &[
            "--cache-to",
            &format!("type=registry,ref={cache_ref},mode=max"),
        ],
    )
    .ok();
    let dir = harness::tempdir();
    let layout = dir.path().join("cache");
    run_tool(Command::new(&skopeo).args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{cache_ref}"),
        &format!("oci:{}:ci-main", layout.display()),
    ]));
    let b = skip_unless!(runner());
    let from = format!("type=local,src={},tag=ci-main", layout.display());
    let second = build(b.path(), ctx.path(), &["--cache-from", &from]).ok();
    assert!(ran(&second).is_empty(), "{}", second.stderr);
    assert_eq!(image_id(&first), image_id(&second));
}

#[test]
fn a_cache_that_cannot_be_read_or_used_never_fails_the_build() {
    let a = skip_unless!(runner());
    let ctx = harness::tempdir();
    app_context(ctx.path());
    let dir = harness::tempdir();
    let cache = dir.path().join("cache");
    let to = format!("type=local,dest={},mode=max", cache.display());
    let first = build(a.path(), ctx.path(), &["--cache-to", &to]).ok();

    // Missing caches are warnings, as in BuildKit; the build runs every step.
    let b = skip_unless!(runner());
    let missing = build(
        b.path(),
        ctx.path(),
        &[
            "--cache-from",
            &format!("type=local,src={}", dir.path().join("nope").display()),
            "--cache-from",
            "type=registry,ref=127.0.0.1:1/nothing:here",
            "--cache-from",
            &format!("type=local,src={},tag=other", cache.display()),
        ],
    )
    .ok();
    assert_eq!(ran(&missing).len(), 5, "{}", missing.stderr);
    let warnings: Vec<&str> = missing
        .stderr
        .lines()
        .filter(|l| l.starts_with("WARNING: failed to import cache"))
        .collect();
    assert_eq!(warnings.len(), 3, "{}", missing.stderr);
    assert!(
        warnings[2].contains("no cache tagged `other`"),
        "{}",
        warnings[2]
    );

    // A corrupted layer in the cache: its step runs instead (and says why with
    // --debug-cache); the corrupt bytes never reach the store.
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(cache.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let blob = |d: &str| {
        cache
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs_err::read(blob(&manifest_digest)).unwrap()).unwrap();
    let config: serde_json::Value = serde_json::from_slice(
        &fs_err::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    // The layer of the first RUN (the record whose preimage has an `argv` with `all.txt`).
    let run_record = config["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r.to_string().contains("all.txt") && r["outcome"]["layer"].is_object())
        .unwrap_or_else(|| panic!("no RUN record in {config}"));
    let layer = run_record["outcome"]["layer"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bytes = fs_err::read(blob(&layer)).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0xff;
    fs_err::write(blob(&layer), &bytes).unwrap();
    let c = skip_unless!(runner());
    let from = format!("type=local,src={}", cache.display());
    let corrupt = build(
        c.path(),
        ctx.path(),
        &["--cache-from", &from, "--debug-cache"],
    )
    .ok();
    let ran_now = ran(&corrupt);
    assert!(
        ran_now.iter().any(|s| s.contains("all.txt")),
        "{}",
        corrupt.stderr
    );
    assert!(
        corrupt
            .stderr
            .contains("the imported cache could not be used"),
        "{}",
        corrupt.stderr
    );
    assert!(
        !c.path()
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:"))
            .exists(),
        "the corrupt layer was stored"
    );
    assert_ne!(image_id(&first), image_id(&corrupt));
}

#[test]
fn a_failed_export_fails_the_build_unless_errors_are_ignored() {
    let (a, ctx) = skip_unless!(runner_with("FROM busybox:local\nRUN echo hi > /hi\n"));
    let failed = build(
        a.path(),
        ctx.path(),
        &["--cache-to", "type=registry,ref=127.0.0.1:1/ci/app:cache"],
    )
    .fails_with(1);
    assert!(
        failed
            .stderr
            .contains("exporting the build cache to 127.0.0.1:1/ci/app:cache"),
        "{}",
        failed.stderr
    );
    let ignored = build(
        a.path(),
        ctx.path(),
        &[
            "--cache-to",
            "type=registry,ref=127.0.0.1:1/ci/app:cache,ignore-error=true",
        ],
    )
    .ok();
    assert!(
        ignored
            .stderr
            .contains("WARNING: exporting the build cache"),
        "{}",
        ignored.stderr
    );
    let bad = build(a.path(), ctx.path(), &["--cache-to", "type=inline"]).fails_with(1);
    assert!(
        bad.stderr.contains("type=inline is not supported"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_cache_in_a_registry_with_bearer_tokens_uses_the_stored_credentials() {
    use base64::Engine as _;
    let ts = skip_unless!(TokenServer::start(&[("ci", "s3cret")]));
    let reg = skip_unless!(Registry::start_with(&ts.registry_auth()));
    let (a, ctx) = skip_unless!(runner_with(
        "FROM busybox:local\nRUN head -c 16 /dev/urandom > /id\n"
    ));
    let cache_ref = format!("{}/ci/cache:main", reg.host_port());
    let docker = harness::tempdir();
    let with_config = |root: &Path, extra: &[&str]| {
        let mut args = vec!["build", "--progress=plain", "-t", "app:1"];
        args.extend_from_slice(extra);
        args.push(ctx.path().to_str().unwrap());
        kiln_env(
            root,
            &args,
            &[
                EPOCH,
                ("DOCKER_CONFIG", docker.path().to_str().unwrap()),
                ("REGISTRY_AUTH_FILE", ""),
            ],
        )
    };
    let to = format!("type=registry,ref={cache_ref}");

    // No credentials: the export is refused by the registry, and the build fails saying so.
    let refused = with_config(a.path(), &["--cache-to", &to]).fails_with(1);
    assert!(
        refused.stderr.contains("exporting the build cache"),
        "{}",
        refused.stderr
    );

    // With the credentials Docker's config file holds: a token for pull and push.
    let auth = base64::engine::general_purpose::STANDARD.encode("ci:s3cret");
    write_files(
        docker.path(),
        &[(
            "config.json",
            &format!(
                r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
                reg.host_port()
            ),
        )],
    );
    ts.clear_requests();
    let first = with_config(a.path(), &["--cache-to", &to]).ok();
    assert_eq!(exported(&first).0, 1, "{}", first.stderr);
    let seen = ts.requests();
    assert!(
        seen.iter()
            .all(|r| r.user.as_deref() == Some("ci")
                && r.scopes == ["repository:ci/cache:pull,push"]),
        "{seen:#?}"
    );

    // A fresh runner imports with a pull-only token and runs nothing.
    ts.clear_requests();
    let b = skip_unless!(runner());
    let second = with_config(
        b.path(),
        &["--cache-from", &format!("type=registry,ref={cache_ref}")],
    )
    .ok();
    assert!(ran(&second).is_empty(), "{}", second.stderr);
    assert_eq!(image_id(&first), image_id(&second));
    let seen = ts.requests();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|r| r.scopes == ["repository:ci/cache:pull"] && r.status == 200),
        "{seen:#?}"
    );
}
