//! Robust transfers (issue [F] points 3-4) against Debian's `docker-registry` behind the
//! fault-injecting relay (`harness::faultproxy`): pushes and pulls of a multi-layer image
//! complete and verify through cut connections, 5xx and 429 answers; an interrupted download
//! resumes with `Range` (and restarts when the registry ignores it); chunked uploads survive a
//! cut `PATCH`; corrupted blobs and layers whose DiffID does not match are refused with nothing
//! stored; blobs the registry has are skipped or mounted; several tags share one upload; a
//! digest-pinned image already in the store needs no registry.
//! `cargo test --test it registry_faults`.

use std::io::Write as _;
use std::time::Instant;

use kiln::image::{Descriptor, ImageRef, media_type};
use kiln::registry::{self, NoopObserver, RegistryError, RegistryOptions, TransferEvent};
use kiln::store::{Store, StoredImage};
use snapshotter::Digest;

use crate::harness::faultproxy::{Fault, FaultProxy, Rule};
use crate::harness::{self, Registry, skip_unless};

/// A multi-layer image made in the test: gzipped tars of pseudo-random (incompressible) files.
struct TestImage {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
    manifest: Vec<u8>,
}

impl TestImage {
    /// Layers of the given sizes; with `bad_diff_id`, the config lists a wrong DiffID for the
    /// last layer.
    fn new(seed: u64, sizes: &[usize], bad_diff_id: bool) -> Self {
        let mut state = seed | 1;
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..size)
                .map(|_| {
                    // xorshift64: reproducible, incompressible enough for gzip.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let mut tar = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(size as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, format!("data-{i}"), &data[..])
                .unwrap();
            let tar = tar.into_inner().unwrap();
            diff_ids.push(Digest::of(&tar));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).unwrap();
            layers.push(gz.finish().unwrap());
        }
        if bad_diff_id && let Some(last) = diff_ids.last_mut() {
            *last = Digest::of(b"not the layer");
        }
        let descriptors: Vec<Descriptor> = layers
            .iter()
            .map(|l| Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::of(l), l.len() as u64))
            .collect();
        let (config, manifest) = crate::support::oci_image_json(&diff_ids, &descriptors);
        Self {
            config,
            layers,
            manifest,
        }
    }

    fn manifest_digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    fn layer_digest(&self, i: usize) -> Digest {
        Digest::of(&self.layers[i])
    }

    fn blobs(&self) -> impl Iterator<Item = &Vec<u8>> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// Store the image under `name` and return it.
    fn store_into(&self, store: &Store, name: &ImageRef) -> StoredImage {
        for bytes in self.blobs().chain([&self.manifest]) {
            store.content().put(bytes).unwrap();
        }
        let desc = Descriptor::new(
            media_type::OCI_MANIFEST,
            self.manifest_digest(),
            self.manifest.len() as u64,
        );
        store.set_ref(name, &desc).unwrap();
        store.image(&desc).unwrap()
    }

    /// Every blob and the manifest are in `store`, with these bytes.
    fn assert_stored(&self, store: &Store) {
        for bytes in self.blobs().chain([&self.manifest]) {
            let digest = Digest::of(bytes);
            assert_eq!(&store.content().read(&digest).unwrap(), bytes, "{digest}");
        }
    }

    /// The registry serves the manifest under `repo:tag` and has every blob.
    fn assert_in_registry(&self, reg: &Registry, repo: &str, tag: &str) {
        assert_eq!(reg.manifest(repo, tag).body, self.manifest, "{repo}:{tag}");
        for bytes in self.blobs() {
            let digest = Digest::of(bytes).to_string();
            assert!(reg.has_blob(repo, &digest), "{repo} lacks {digest}");
        }
    }
}

/// Records events for assertions.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<TransferEvent>>);

impl kiln::registry::TransferObserver for Recorder {
    fn event(&self, event: TransferEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    fn take(&self) -> Vec<TransferEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn reference(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn open_store(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open(&dir.path().join(name)).unwrap()
}

fn ingest_files(store: &Store) -> usize {
    fs_err::read_dir(store.root().join("ingest"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn assert_all_fired(proxy: &FaultProxy) {
    let pending = proxy.pending();
    assert!(pending.is_empty(), "faults that never fired: {pending:?}");
}

/// Push `image` to `repo:tag` of `reg` directly (no faults).
fn push_plain(reg: &Registry, store: &Store, image: &StoredImage, repo_tag: &str) {
    let dest = reference(&format!("{}/{repo_tag}", reg.host_port()));
    registry::push(
        store,
        image,
        &dest,
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
}

const SIZES: [usize; 3] = [1_500_000, 1_200_000, 900_000];

/// A registry holding test image `seed` (layers of `sizes`; with a wrong DiffID in its config
/// when `wrong_diff_id`) as `app:v1`, pushed without faults, and an empty store to pull into.
struct Published {
    reg: Registry,
    img: TestImage,
    /// Holds both stores.
    _dir: tempfile::TempDir,
    fresh: Store,
}

fn published(seed: u64, sizes: &[usize], wrong_diff_id: bool) -> Result<Published, harness::Skip> {
    let reg = Registry::start()?;
    let img = TestImage::new(seed, sizes, wrong_diff_id);
    let dir = harness::tempdir();
    let store = open_store(&dir, "a");
    let image = img.store_into(&store, &reference("local/app:v1"));
    push_plain(&reg, &store, &image, "app:v1");
    let fresh = open_store(&dir, "b");
    Ok(Published {
        reg,
        img,
        _dir: dir,
        fresh,
    })
}

#[test]
fn push_and_pull_complete_through_cuts_and_errors() {
    let reg = skip_unless!(Registry::start());
    let proxy = FaultProxy::start(reg.addr());
    let host = proxy.host_port();
    let img = TestImage::new(1, &SIZES, false);
    let dir = harness::tempdir();
    let store = open_store(&dir, "a");
    let name = reference(&format!("{host}/app:v1"));
    let image = img.store_into(&store, &name);

    proxy.add(Rule::new(
        "HEAD",
        "/blobs/",
        Fault::Status {
            code: 429,
            retry_after: Some(1),
        },
    ));
    proxy.add(Rule::new(
        "POST",
        "/blobs/uploads/",
        Fault::Status {
            code: 500,
            retry_after: None,
        },
    ));
    proxy.add(Rule::new("PUT", "/blobs/uploads/", Fault::CutRequestAfter(300_000)).times(2));
    proxy.add(Rule::new(
        "PUT",
        "/manifests/",
        Fault::Status {
            code: 503,
            retry_after: None,
        },
    ));
    let pushed = registry::push(
        &store,
        &image,
        &name,
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
    assert_eq!(pushed.digest, img.manifest_digest());
    assert_all_fired(&proxy);
    img.assert_in_registry(&reg, "app", "v1");

    // Pull into a fresh store through cuts (twice in the same layer), a 500 and a 429.
    proxy.clear_log();
    let layer0 = format!("/blobs/{}", img.layer_digest(0));
    proxy.add(Rule::new(
        "GET",
        "/manifests/",
        Fault::Status {
            code: 500,
            retry_after: None,
        },
    ));
    proxy.add(Rule::new("GET", &layer0, Fault::CutResponseAfter(600_000)).times(2));
    let layer2 = format!("/blobs/{}", img.layer_digest(2));
    proxy.add(Rule::new(
        "GET",
        &layer2,
        Fault::Status {
            code: 429,
            retry_after: None,
        },
    ));
    let store2 = open_store(&dir, "b");
    let pulled = registry::pull(&store2, &name, &RegistryOptions::default(), &NoopObserver)
        .unwrap_or_else(|e| panic!("pull: {e}\n{}", reg.log()));
    assert_eq!(pulled.manifest_descriptor.digest, img.manifest_digest());
    assert_all_fired(&proxy);
    img.assert_stored(&store2);
    assert_eq!(ingest_files(&store2), 0);
    let ranges: Vec<String> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.target.ends_with(&layer0))
        .filter_map(|s| s.range)
        .collect();
    assert_eq!(ranges.len(), 2, "two resumed requests: {ranges:?}");
    for r in &ranges {
        let start: u64 = r
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("range {r}"));
        assert!(start > 0 && start < img.layers[0].len() as u64, "{r}");
    }
}

#[test]
fn download_restarts_when_the_registry_ignores_range() {
    let Published {
        reg,
        img,
        _dir,
        fresh: store2,
    } = skip_unless!(published(2, &SIZES[..2], false));

    let proxy = FaultProxy::start(reg.addr());
    let layer0 = format!("/blobs/{}", img.layer_digest(0));
    proxy.add(Rule::new("GET", &layer0, Fault::CutResponseAfter(500_000)));
    proxy.add(Rule::new("GET", &layer0, Fault::DropRange));
    let name = reference(&format!("{}/app:v1", proxy.host_port()));
    registry::pull(&store2, &name, &RegistryOptions::default(), &NoopObserver)
        .unwrap_or_else(|e| panic!("pull: {e}"));
    assert_all_fired(&proxy);
    img.assert_stored(&store2);
    assert_eq!(ingest_files(&store2), 0);
}

#[test]
fn chunked_push_survives_a_cut_chunk() {
    let reg = skip_unless!(Registry::start());
    let proxy = FaultProxy::start(reg.addr());
    let host = proxy.host_port();
    let img = TestImage::new(3, &SIZES, false);
    let root = harness::tempdir();
    let name = reference(&format!("{host}/chunky:v1"));
    {
        let store = Store::open(root.path()).unwrap();
        img.store_into(&store, &name);
    }
    proxy.add(Rule::new(
        "PATCH",
        "/blobs/uploads/",
        Fault::CutRequestAfter(100_000),
    ));
    proxy.add(Rule::new(
        "PATCH",
        "/blobs/uploads/",
        Fault::Status {
            code: 500,
            retry_after: None,
        },
    ));
    let out = harness::run_ok(
        harness::kiln_cmd(root.path())
            .env("KILN_PUSH_CHUNK_SIZE", "256K")
            .args(["push", &name.to_string()]),
    );
    assert!(out.contains(&img.manifest_digest().to_string()), "{out}");
    assert_all_fired(&proxy);
    img.assert_in_registry(&reg, "chunky", "v1");
    let seen = proxy.seen();
    let patches = seen.iter().filter(|s| s.method == "PATCH").count();
    assert!(
        patches >= SIZES.iter().sum::<usize>() / (256 * 1024),
        "uploaded in chunks: {patches} PATCH requests"
    );
    let status_queries = seen
        .iter()
        .filter(|s| s.method == "GET" && s.target.contains("/blobs/uploads/"))
        .count();
    assert!(status_queries >= 1, "the session was asked where it stands");
    let starts = seen
        .iter()
        .filter(|s| s.method == "POST" && s.target.contains("/blobs/uploads/"))
        .count();
    // The chunk answered 500 never reached the registry: its session continues where it
    // stood. The cut one may have left part of a chunk behind: that blob starts over.
    assert!(starts < 4 + 2, "a session was resumed: {starts} sessions");
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "chunked push: {patches} PATCH, {status_queries} status queries, {starts} sessions for 4 blobs"
        );
    }
}

#[test]
fn corrupted_blob_is_refused_and_nothing_is_stored() {
    let Published {
        reg,
        img,
        _dir,
        fresh: store2,
    } = skip_unless!(published(4, &SIZES[..2], false));

    let proxy = FaultProxy::start(reg.addr());
    let layer1 = img.layer_digest(1);
    proxy.add(
        Rule::new(
            "GET",
            &format!("/blobs/{layer1}"),
            Fault::CorruptResponseAt(50_000),
        )
        .times(100),
    );
    let host = proxy.host_port();
    let err = registry::pull(
        &store2,
        &reference(&format!("{host}/app:v1")),
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { expected, .. } if expected == layer1),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "blob {layer1} from {host}/app does not match its digest"
        )),
        "{err}"
    );
    assert!(!store2.content().contains(&layer1));
    assert!(!store2.content().contains(&img.manifest_digest()));
    assert!(store2.refs().unwrap().is_empty());
    assert_eq!(ingest_files(&store2), 0);
}

#[test]
fn layer_with_a_wrong_diff_id_is_refused() {
    let Published {
        reg,
        img,
        _dir,
        fresh: store2,
    } = skip_unless!(published(5, &SIZES[..2], true));

    let err = registry::pull(
        &store2,
        &reference(&format!("{}/app:v1", reg.host_port())),
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_err();
    let layer1 = img.layer_digest(1);
    let text = err.to_string();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    assert!(
        text.starts_with(&format!(
            "the uncompressed content (DiffID) of layer blob {layer1}"
        )),
        "{text}"
    );
    assert!(!store2.content().contains(&layer1));
    assert!(store2.refs().unwrap().is_empty());
    assert_eq!(ingest_files(&store2), 0);
}

#[test]
fn pinned_digest_already_local_needs_no_registry() {
    let Published {
        reg,
        img,
        _dir,
        fresh: store2,
    } = skip_unless!(published(6, &SIZES[..1], false));
    let host = reg.host_port();
    registry::pull(
        &store2,
        &reference(&format!("{host}/app:v1")),
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap();
    drop(reg);

    let pinned = reference(&format!("{host}/app@{}", img.manifest_digest()));
    let image = registry::pull(&store2, &pinned, &RegistryOptions::default(), &NoopObserver)
        .unwrap_or_else(|e| panic!("pinned pull with the registry stopped: {e}"));
    assert_eq!(image.manifest_descriptor.digest, img.manifest_digest());
    assert!(
        store2.resolve(&pinned).unwrap().is_some(),
        "the pinned reference is set"
    );
    // A tag still needs the registry (it may have moved): the registry is really gone.
    let err = registry::pull(
        &store2,
        &reference(&format!("{host}/app:v1")),
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
}

#[test]
fn present_blobs_are_skipped_mounted_and_shared_by_tags() {
    let reg = skip_unless!(Registry::start());
    let proxy = FaultProxy::start(reg.addr());
    let host = proxy.host_port();
    let img = TestImage::new(7, &SIZES, false);
    let dir = harness::tempdir();
    let store = open_store(&dir, "a");
    let image = img.store_into(&store, &reference("local/app:v1"));

    // Several tags in one push: each blob uploaded once, the manifest under each tag.
    let tags = ["v1", "v2", "v3"].map(|t| reference(&format!("{host}/app:{t}")));
    registry::push_all(
        &store,
        &image,
        &tags,
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_or_else(|e| panic!("push: {e}"));
    for t in ["v1", "v2", "v3"] {
        img.assert_in_registry(&reg, "app", t);
    }
    let uploads = |proxy: &FaultProxy| {
        proxy
            .seen()
            .iter()
            .filter(|s| s.method == "PUT" && s.target.contains("/blobs/uploads/"))
            .count()
    };
    assert_eq!(uploads(&proxy), 4, "config and three layers, once each");

    // Everything present: HEADs and the manifest only.
    proxy.clear_log();
    let started = Instant::now();
    let rec = Recorder::default();
    registry::push(&store, &image, &tags[0], &RegistryOptions::default(), &rec).unwrap();
    let elapsed = started.elapsed();
    #[allow(clippy::print_stderr)]
    {
        eprintln!("push with every blob present: {elapsed:?}");
    }
    assert_eq!(uploads(&proxy), 0);
    let existing = rec
        .take()
        .iter()
        .filter(|e| matches!(e, TransferEvent::BlobExists { .. }))
        .count();
    assert_eq!(existing, 4);

    // Mount: an image pulled from `app` pushed to `other` of the same registry.
    let store2 = open_store(&dir, "b");
    let pulled = registry::pull(
        &store2,
        &tags[0],
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap();
    proxy.clear_log();
    let other = reference(&format!("{host}/other:v1"));
    registry::push(
        &store2,
        &pulled,
        &other,
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap();
    img.assert_in_registry(&reg, "other", "v1");
    let mounts = proxy
        .seen()
        .iter()
        .filter(|s| {
            s.method == "POST" && s.target.contains("mount=") && s.target.contains("from=app")
        })
        .count();
    assert_eq!(mounts, 4, "every blob mounted from app");
    assert_eq!(uploads(&proxy), 0, "nothing uploaded");
}
