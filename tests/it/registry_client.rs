//! The registry client (`kiln::registry`) against a real registry (Debian's `docker-registry`,
//! fed by skopeo), and (in `scripted`) against a scripted fake (`fake`) for misbehaviour a real
//! registry does not show. `cargo test --test it registry`.

mod fake;
mod scripted;

use std::process::Command;
use std::sync::Mutex;

use kiln::image::ImageRef;
use kiln::registry::{
    self, NoopObserver, RegistryError, RegistryOptions, TransferEvent, TransferObserver,
};
use kiln::store::{Store, StoredImage};
use snapshotter::Digest;

use crate::harness::{self, Registry, run_ok, skip_unless, which};

/// Records events for assertions.
#[derive(Default)]
struct Recorder(Mutex<Vec<TransferEvent>>);

impl TransferObserver for Recorder {
    fn event(&self, event: TransferEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    fn take(&self) -> Vec<TransferEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The digests of the events `pick` selects, sorted: blobs move in parallel, so the order of
/// their events is not fixed.
fn digests_of(
    events: &[TransferEvent],
    pick: impl Fn(&TransferEvent) -> Option<Digest>,
) -> Vec<Digest> {
    let mut digests: Vec<Digest> = events.iter().filter_map(pick).collect();
    digests.sort();
    digests
}

fn started(events: &[TransferEvent]) -> Vec<Digest> {
    digests_of(events, |e| match e {
        TransferEvent::BlobStarted { digest, .. } => Some(*digest),
        _ => None,
    })
}

fn existing(events: &[TransferEvent]) -> Vec<Digest> {
    digests_of(events, |e| match e {
        TransferEvent::BlobExists { digest, .. } => Some(*digest),
        _ => None,
    })
}

fn done(events: &[TransferEvent]) -> Vec<Digest> {
    digests_of(events, |e| match e {
        TransferEvent::BlobDone { digest, .. } => Some(*digest),
        _ => None,
    })
}

/// The image's blobs (config and layers), sorted.
fn blob_digests(image: &StoredImage) -> Vec<Digest> {
    let mut digests: Vec<Digest> = std::iter::once(image.manifest.config.digest)
        .chain(image.manifest.layers.iter().map(|l| l.digest))
        .collect();
    digests.sort();
    digests
}

fn open_store(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("store")).unwrap()
}

fn reference(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Files under the store's ingest directory (leftovers of failed writes).
fn ingest_files(store: &Store) -> usize {
    fs_err::read_dir(store.root().join("ingest"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn pull_from_registry_then_push_to_another_repository() {
    let reg = skip_unless!(Registry::start());
    let pushed_digest = skip_unless!(harness::skopeo_push_busybox(&reg, "library/busybox:latest"));
    let host = reg.host_port();
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let opts = RegistryOptions::default();
    let rec = Recorder::default();

    // Pull: everything is downloaded, verified and referenced.
    let source = reference(&format!("{host}/library/busybox:latest"));
    let image = registry::pull(&store, &source, &opts, &rec)
        .unwrap_or_else(|e| panic!("pull: {e}\n{}", reg.log()));
    assert_eq!(image.manifest_descriptor.digest.to_string(), pushed_digest);
    let served = reg.manifest("library/busybox", "latest");
    assert_eq!(
        store
            .content()
            .read(&image.manifest_descriptor.digest)
            .unwrap(),
        served.body,
        "manifest bytes are stored exactly as served"
    );
    assert_eq!(
        image.manifest_descriptor.media_type,
        served.header("content-type").unwrap()
    );
    for desc in std::iter::once(&image.manifest.config).chain(&image.manifest.layers) {
        assert_eq!(store.content().size(&desc.digest).unwrap(), desc.size);
        assert_eq!(
            store.content().read(&desc.digest).unwrap().len() as u64,
            desc.size,
            "read verifies the digest"
        );
    }
    let resolved = store.resolve(&source).unwrap().expect("the tag is set");
    assert_eq!(resolved.manifest_descriptor, image.manifest_descriptor);
    let events = rec.take();
    assert_eq!(
        events.first(),
        Some(&TransferEvent::Resolving {
            reference: source.clone()
        })
    );
    assert!(events.contains(&TransferEvent::Resolved {
        reference: source.clone(),
        digest: image.manifest_descriptor.digest,
        manifest: image.manifest_descriptor.digest
    }));
    assert_eq!(started(&events), blob_digests(&image));
    assert_eq!(done(&events), blob_digests(&image));
    assert_eq!(ingest_files(&store), 0);

    // Pulling again downloads nothing; pulling by digest sets the digest reference.
    let pinned = source.with_digest(image.manifest_descriptor.digest);
    let again = registry::pull(&store, &pinned, &opts, &rec).unwrap();
    assert_eq!(again.manifest_descriptor, image.manifest_descriptor);
    let events = rec.take();
    assert!(started(&events).is_empty(), "{events:?}");
    assert_eq!(existing(&events), blob_digests(&image));
    assert!(store.refs().unwrap().contains_key(&pinned));

    // Push to another repository of the same registry: every blob is mounted from the
    // repository the image was pulled from (nothing uploaded), then the manifest is put.
    let dest = reference(&format!("{host}/other/busybox:v1"));
    let pushed = registry::push(&store, &image, &dest, &opts, &rec)
        .unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
    assert_eq!(pushed, image.manifest_descriptor);
    let events = rec.take();
    assert!(started(&events).is_empty(), "{events:?}");
    assert_eq!(existing(&events), blob_digests(&image));
    assert_eq!(
        events.last(),
        Some(&TransferEvent::ManifestPushed {
            reference: dest.clone(),
            digest: image.manifest_descriptor.digest,
            size: image.manifest_descriptor.size
        })
    );
    for digest in blob_digests(&image) {
        assert!(reg.has_blob("other/busybox", &digest.to_string()));
    }
    assert_eq!(reg.manifest("other/busybox", "v1").body, served.body);

    // A second opinion: skopeo sees the same image.
    if let Ok(skopeo) = which("skopeo") {
        let out = run_ok(Command::new(skopeo).args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{host}/other/busybox:v1"),
        ]));
        let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            inspected["Digest"],
            image.manifest_descriptor.digest.to_string()
        );
        let layers: Vec<String> = image
            .manifest
            .layers
            .iter()
            .map(|l| l.digest.to_string())
            .collect();
        assert_eq!(inspected["Layers"], serde_json::json!(layers));
    }

    // Pushing again finds every blob and still (re)writes the tag.
    registry::push(&store, &image, &dest, &opts, &rec).unwrap();
    let events = rec.take();
    assert!(started(&events).is_empty(), "{events:?}");
    assert_eq!(existing(&events), blob_digests(&image));
    assert!(matches!(
        events.last(),
        Some(TransferEvent::ManifestPushed { .. })
    ));

    // Pushing by digest.
    let by_digest = dest.with_digest(image.manifest_descriptor.digest);
    registry::push(&store, &image, &by_digest, &opts, &NoopObserver).unwrap();
    let wrong_pin = dest.with_digest(Digest::of(b"something else"));
    let err = registry::push(&store, &image, &wrong_pin, &opts, &NoopObserver).unwrap_err();
    assert!(
        matches!(err, RegistryError::DestinationDigest { .. }),
        "{err}"
    );
}

#[test]
fn unknown_tag_and_unknown_repository_are_named() {
    let reg = skip_unless!(Registry::start());
    skip_unless!(harness::skopeo_push_busybox(&reg, "library/busybox:latest"));
    let host = reg.host_port();
    let dir = harness::tempdir();
    let store = open_store(&dir);

    let missing_tag = reference(&format!("{host}/library/busybox:nope"));
    let err = registry::pull(
        &store,
        &missing_tag,
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestNotFound { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("manifest for {host}/library/busybox:nope not found: manifest unknown")
    );

    let missing_repo = reference(&format!("{host}/no/such/repo:latest"));
    let err = registry::pull(
        &store,
        &missing_repo,
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_err();
    // distribution answers MANIFEST_UNKNOWN (not NAME_UNKNOWN) for a repository it never saw.
    assert!(
        matches!(err, RegistryError::ManifestNotFound { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("manifest for {host}/no/such/repo:latest not found: manifest unknown")
    );

    // The registry speaks plain HTTP: asking for verified TLS fails in the handshake.
    let verified = RegistryOptions {
        tls_verify: Some(true),
        ..RegistryOptions::default()
    };
    let err = registry::pull(
        &store,
        &reference(&format!("{host}/library/busybox:latest")),
        &verified,
        &NoopObserver,
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");

    assert!(store.refs().unwrap().is_empty());
}
#[test]
fn closed_port_is_unreachable() {
    // Bind and release a port: nothing listens there now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let err = registry::pull(
        &store,
        &reference(&format!("{addr}/app:latest")),
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot reach registry {addr}: connection refused")
    );
}
