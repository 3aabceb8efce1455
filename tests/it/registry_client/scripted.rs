//! The registry client against a scripted registry (`fake`): behaviour a well-behaved registry
//! does not show (tampered or oversized blobs, wrong digests, token authentication, relative
//! upload locations, multi-platform indexes, error codes).

use kiln::image::{Descriptor, Platform, media_type};
use kiln::registry::{self, BlobKind, NoopObserver, RegistryError, RegistryOptions, TransferEvent};
use kiln::store::{Store, StoredImage};
use snapshotter::Digest;

use super::fake::{FakeServer, Request, Response};
use super::{Recorder, done, existing, ingest_files, open_store, reference};
use crate::harness;

#[test]
fn registry_error_codes_pick_the_error() {
    type IsExpected = fn(&RegistryError) -> bool;
    let cases: [(u16, &str, &str, IsExpected, &str); 4] = [
        (
            404,
            "NAME_UNKNOWN",
            "repository name not known to registry",
            |e| matches!(e, RegistryError::RepositoryNotFound { .. }),
            "repository {host}/app not found: repository name not known to registry",
        ),
        (
            403,
            "DENIED",
            "requested access to the resource is denied",
            |e| matches!(e, RegistryError::Denied { .. }),
            "access to {host}/app denied: requested access to the resource is denied",
        ),
        (
            404,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            |e| matches!(e, RegistryError::ManifestNotFound { .. }),
            "manifest for {host}/app:latest not found: manifest unknown",
        ),
        (
            500,
            "UNKNOWN",
            "unknown error",
            |e| matches!(e, RegistryError::Status { status: 500, .. }),
            "fetching manifest for {host}/app:latest failed: registry answered HTTP 500: unknown error",
        ),
    ];
    for (status, code, message, is_expected, text) in cases {
        let server = FakeServer::start(move |r| {
            if r.path() == "/v2/" {
                Response::new(200)
            } else {
                Response::error(status, code, message)
            }
        });
        let dir = harness::tempdir();
        let store = open_store(&dir);
        let host = server.host_port();
        let err = registry::pull(
            &store,
            &reference(&format!("{host}/app:latest")),
            &RegistryOptions::default(),
            &NoopObserver,
        )
        .unwrap_err();
        assert!(is_expected(&err), "{code}: {err:?}");
        assert_eq!(err.to_string(), text.replace("{host}", &host));
    }
}
#[test]
fn verified_tls_against_plain_http_is_a_tls_error() {
    let server = FakeServer::start(|_| Response::new(200).body("{}"));
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let opts = RegistryOptions {
        tls_verify: Some(true),
        ..RegistryOptions::default()
    };
    let err = registry::pull(
        &store,
        &reference(&format!("{}/app:latest", server.host_port())),
        &opts,
        &NoopObserver,
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "tls connection to registry {} failed: ",
            server.host_port()
        )),
        "{err}"
    );
}
/// A tiny image (not a real tar layer: transfers do not look inside blobs).
struct TinyImage {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

impl TinyImage {
    fn new() -> Self {
        // A gzipped empty stream: its DiffID is the digest of no bytes, as the config says.
        let layer = {
            use std::io::Write as _;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(b"").unwrap();
            gz.finish().unwrap()
        };
        let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#.to_vec();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            Digest::of(&config),
            config.len(),
            media_type::OCI_LAYER_GZIP,
            Digest::of(&layer),
            layer.len()
        )
        .into_bytes();
        Self {
            config,
            layer,
            manifest,
        }
    }

    fn manifest_digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    /// Serve this image as repository `app`; `layer_bytes` is what the layer blob answers.
    fn serve(&self, request: &Request, layer_bytes: &[u8]) -> Response {
        let manifests = "/v2/app/manifests/";
        let blobs = "/v2/app/blobs/";
        match request.path() {
            "/v2/" => Response::new(200).body("{}"),
            p if p.starts_with(manifests) => Response::new(200)
                .header("content-type", media_type::OCI_MANIFEST)
                .header("docker-content-digest", self.manifest_digest().to_string())
                .body(self.manifest.clone()),
            p if p == format!("{blobs}{}", Digest::of(&self.config)) => {
                Response::new(200).body(self.config.clone())
            }
            p if p == format!("{blobs}{}", Digest::of(&self.layer)) => {
                Response::new(200).body(layer_bytes.to_vec())
            }
            _ => Response::error(404, "NOT_FOUND", "not found"),
        }
    }

    /// Put the image into `store` and return it.
    fn store_into(&self, store: &Store) -> StoredImage {
        for bytes in [&self.config, &self.layer, &self.manifest] {
            store.content().put(bytes).unwrap();
        }
        store
            .image(&Descriptor::new(
                media_type::OCI_MANIFEST,
                self.manifest_digest(),
                self.manifest.len() as u64,
            ))
            .unwrap()
    }
}

#[test]
fn tampered_layer_is_refused_and_not_stored() {
    let image = TinyImage::new();
    let tampered: Vec<u8> = image.layer.iter().map(|b| b ^ 1).collect();
    let server = {
        let (image, tampered) = (TinyImage::new(), tampered.clone());
        FakeServer::start(move |r| image.serve(r, &tampered))
    };
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let err = registry::pull(
        &store,
        &reference(&format!("{}/app:latest", server.host_port())),
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_err();
    let layer_digest = Digest::of(&image.layer);
    match &err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(*expected, layer_digest);
            assert_eq!(*actual, Digest::of(&tampered));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(
        err.to_string().starts_with(&format!(
            "blob {layer_digest} from {}/app does not match its digest",
            server.host_port()
        )),
        "{err}"
    );
    assert!(!store.content().contains(&layer_digest));
    assert!(!store.content().contains(&Digest::of(&tampered)));
    assert!(!store.content().contains(&image.manifest_digest()));
    assert!(store.refs().unwrap().is_empty());
    assert_eq!(ingest_files(&store), 0);
}

#[test]
fn oversized_blob_is_refused() {
    let image = TinyImage::new();
    let longer = [image.layer.as_slice(), b"and then some"].concat();
    let server = FakeServer::start(move |r| TinyImage::new().serve(r, &longer));
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let err = registry::pull(
        &store,
        &reference(&format!("{}/app:latest", server.host_port())),
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. }
        ),
        "{err:?}"
    );
    assert!(!store.content().contains(&Digest::of(&image.layer)));
    assert!(store.refs().unwrap().is_empty());
}

#[test]
fn pinned_digest_is_checked_against_the_manifest_bytes() {
    let image = TinyImage::new();
    let server = FakeServer::start(move |r| TinyImage::new().serve(r, &TinyImage::new().layer));
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let wanted = Digest::of(b"a different manifest");
    let pinned = reference(&format!("{}/app@{wanted}", server.host_port()));
    let err =
        registry::pull(&store, &pinned, &RegistryOptions::default(), &NoopObserver).unwrap_err();
    match err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, wanted);
            assert_eq!(actual, image.manifest_digest());
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.path().contains("/blobs/"))
            .count(),
        0,
        "no blob is fetched for an unverified manifest"
    );
}

/// A registry that wants a bearer token from its token server (`/token` on the same server).
fn token_protected(image: TinyImage, token: &'static str, accept_token: bool) -> FakeServer {
    let realm = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let server = {
        let realm = std::sync::Arc::clone(&realm);
        FakeServer::start(move |r| {
            let realm = realm.get().expect("realm is set before requests");
            if r.path() == "/token" {
                return Response::new(200)
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"token":"{token}","expires_in":300}}"#));
            }
            let authorized =
                accept_token && r.header("authorization") == Some(&format!("Bearer {token}"));
            if !authorized {
                let error = if r.header("authorization").is_some() {
                    r#","error="insufficient_scope""#
                } else {
                    ""
                };
                return Response::error(401, "UNAUTHORIZED", "authentication required")
                    .header("www-authenticate", format!(r#"Bearer realm="{realm}",service="fake-registry",scope="repository:app:pull"{error}"#));
            }
            image.serve(r, &image.layer)
        })
    };
    realm
        .set(format!("http://{}/token", server.host_port()))
        .unwrap();
    server
}

#[test]
fn bearer_challenge_gets_an_anonymous_token() {
    let image = TinyImage::new();
    let server = token_protected(TinyImage::new(), "t0k3n", true);
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let pulled = registry::pull(
        &store,
        &reference(&format!("{}/app:v1", server.host_port())),
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap();
    assert_eq!(pulled.manifest_descriptor.digest, image.manifest_digest());

    let requests = server.requests();
    let token_requests: Vec<&Request> = requests.iter().filter(|r| r.path() == "/token").collect();
    assert_eq!(token_requests.len(), 1, "one token serves the whole pull");
    let query = token_requests[0].query();
    assert!(
        query.contains(&("service".to_owned(), "fake-registry".to_owned())),
        "{query:?}"
    );
    assert!(
        query.contains(&("scope".to_owned(), "repository:app:pull".to_owned())),
        "{query:?}"
    );
    for r in requests.iter().filter(|r| r.path().starts_with("/v2/app/")) {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer t0k3n"),
            "{} {}",
            r.method,
            r.target
        );
    }
}

#[test]
fn refused_token_is_authentication_required() {
    let server = token_protected(TinyImage::new(), "useless", false);
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let err = registry::pull(
        &store,
        &reference(&format!("{}/app:v1", server.host_port())),
        &RegistryOptions::default(),
        &NoopObserver,
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::AuthRequired { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "authentication required for {}: ",
            server.host_port()
        )),
        "{err}"
    );
    // One request without a token, one with it; then kiln gives up instead of looping.
    let manifest_requests = server
        .requests()
        .iter()
        .filter(|r| r.path().contains("/manifests/"))
        .count();
    assert!(
        manifest_requests <= 2,
        "{manifest_requests} manifest requests"
    );
}

#[test]
fn push_follows_a_relative_upload_location_with_query() {
    let image = TinyImage::new();
    let server = FakeServer::start(|r| match (r.method.as_str(), r.path()) {
        ("GET", "/v2/") => Response::new(200).body("{}"),
        ("HEAD", p) if p.starts_with("/v2/app/blobs/") => Response::new(404),
        ("POST", "/v2/app/blobs/uploads/") => Response::new(202).header(
            "location",
            "/v2/app/blobs/uploads/session-1?_state=opaque%2Fstate",
        ),
        ("PUT", "/v2/app/blobs/uploads/session-1") => {
            let query = r.query();
            let digest = query
                .iter()
                .find(|(k, _)| k == "digest")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            if query.first() != Some(&("_state".to_owned(), "opaque/state".to_owned()))
                || digest != Digest::of(&r.body).to_string()
            {
                return Response::error(
                    400,
                    "DIGEST_INVALID",
                    "provided digest did not match uploaded content",
                );
            }
            Response::new(201).header("docker-content-digest", digest)
        }
        ("PUT", "/v2/app/manifests/v2") => {
            Response::new(201).header("docker-content-digest", Digest::of(&r.body).to_string())
        }
        _ => Response::error(404, "NOT_FOUND", "not found"),
    });
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let stored = image.store_into(&store);
    let rec = Recorder::default();
    let dest = reference(&format!("{}/app:v2", server.host_port()));
    let pushed = registry::push(&store, &stored, &dest, &RegistryOptions::default(), &rec).unwrap();
    assert_eq!(pushed.digest, image.manifest_digest());
    // Blobs are uploaded in parallel: in any order.
    let mut uploaded = done(&rec.take());
    uploaded.sort();
    let mut expected = vec![Digest::of(&image.config), Digest::of(&image.layer)];
    expected.sort();
    assert_eq!(uploaded, expected);

    let requests = server.requests();
    let manifest_put = requests
        .iter()
        .find(|r| r.method == "PUT" && r.path() == "/v2/app/manifests/v2")
        .expect("manifest pushed");
    assert_eq!(
        manifest_put.body, image.manifest,
        "manifest bytes are pushed as stored"
    );
    assert_eq!(
        manifest_put.header("content-type"),
        Some(media_type::OCI_MANIFEST)
    );
    let layer_put = requests
        .iter()
        .find(|r| r.method == "PUT" && r.body == image.layer)
        .expect("layer uploaded");
    assert_eq!(
        layer_put.header("content-length"),
        Some(image.layer.len().to_string().as_str())
    );
}

#[test]
fn push_refuses_a_registry_reporting_another_manifest_digest() {
    let image = TinyImage::new();
    let server = FakeServer::start(|r| match (r.method.as_str(), r.path()) {
        ("GET", "/v2/") => Response::new(200),
        ("HEAD", _) => Response::new(200),
        ("PUT", _) => Response::new(201).header(
            "docker-content-digest",
            Digest::of(b"not what was sent").to_string(),
        ),
        _ => Response::error(404, "NOT_FOUND", "not found"),
    });
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let stored = image.store_into(&store);
    let rec = Recorder::default();
    let err = registry::push(
        &store,
        &stored,
        &reference(&format!("{}/app:v1", server.host_port())),
        &RegistryOptions::default(),
        &rec,
    )
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    // Blobs are checked in parallel: in any order.
    let mut found = existing(&rec.take());
    found.sort();
    let mut expected = vec![Digest::of(&image.config), Digest::of(&image.layer)];
    expected.sort();
    assert_eq!(found, expected);
}

fn platform(arch: &str, variant: Option<&str>) -> Platform {
    Platform {
        architecture: arch.into(),
        os: "linux".into(),
        os_version: None,
        os_features: vec![],
        variant: variant.map(Into::into),
    }
}

/// Serves `app:multi` as an index with an amd64 entry (the tiny image) and an arm64 entry
/// whose manifest does not exist.
fn serve_index(image: &TinyImage, r: &Request) -> Response {
    let index = index_bytes(image);
    if r.path() == "/v2/app/manifests/multi" {
        return Response::new(200)
            .header("content-type", media_type::OCI_INDEX)
            .body(index);
    }
    image.serve(r, &image.layer)
}

fn index_bytes(image: &TinyImage) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},{{"mediaType":"{}","digest":"{}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#,
        media_type::OCI_INDEX,
        media_type::OCI_MANIFEST,
        image.manifest_digest(),
        image.manifest.len(),
        media_type::OCI_MANIFEST,
        Digest::of(b"arm"),
        media_type::OCI_MANIFEST,
        Digest::of(b"attestation"),
    )
    .into_bytes()
}

#[test]
fn index_selects_the_requested_platform() {
    let image = TinyImage::new();
    let server = FakeServer::start(|r| serve_index(&TinyImage::new(), r));
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let multi = reference(&format!("{}/app:multi", server.host_port()));

    let opts = RegistryOptions {
        platform: platform("amd64", None),
        ..RegistryOptions::default()
    };
    let rec = Recorder::default();
    let pulled = registry::pull(&store, &multi, &opts, &rec).unwrap();
    assert_eq!(pulled.manifest_descriptor.digest, image.manifest_digest());
    let index_digest = Digest::of(&index_bytes(&image));
    assert!(rec.take().contains(&TransferEvent::Resolved {
        reference: multi.clone(),
        digest: index_digest,
        manifest: image.manifest_digest()
    }));
    assert_eq!(
        store
            .resolve(&multi)
            .unwrap()
            .unwrap()
            .manifest_descriptor
            .digest,
        image.manifest_digest()
    );

    let opts = RegistryOptions {
        platform: platform("s390x", None),
        ..RegistryOptions::default()
    };
    let err = registry::pull(&store, &multi, &opts, &NoopObserver).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}/app:multi has no image for platform linux/s390x (available: linux/amd64, linux/arm64/v8)",
            server.host_port()
        )
    );
}

#[test]
fn blob_kinds_are_reported() {
    let server = FakeServer::start(|r| TinyImage::new().serve(r, &TinyImage::new().layer));
    let dir = harness::tempdir();
    let store = open_store(&dir);
    let rec = Recorder::default();
    registry::pull(
        &store,
        &reference(&format!("{}/app:latest", server.host_port())),
        &RegistryOptions::default(),
        &rec,
    )
    .unwrap();
    let kinds: Vec<BlobKind> = rec
        .take()
        .iter()
        .filter_map(|e| {
            if let TransferEvent::BlobStarted { kind, .. } = e {
                Some(*kind)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(kinds, vec![BlobKind::Config, BlobKind::Layer]);
}
