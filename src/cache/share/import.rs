//! `--cache-from`: the records of exported caches, loaded before the build (each cache's
//! manifest and config; a cache that cannot be read is a warning, as in BuildKit, and the
//! build goes on without it), and their layers fetched when a step hits one of them.
//!
//! A record's key is computed here from its preimage: a record answers exactly the step whose
//! preimage it carries. A layer is stored only after its digest, size and DiffID matched
//! (`registry::RemoteArtifact::fetch_layer` for registries; [`copy_verified`] for directories).
//!
//! Not responsible for: deciding to look up (`BuildCache::lookup` asks here after a local
//! miss), the local records (`cache`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;

use snapshotter::{DiffId, Digest, DigestWriter};

use super::layout::Layout;
use super::{CONFIG_MEDIA_TYPE, CacheConfig, CacheSource};
use crate::archive::compression::Compression;
use crate::cache::key::KEY_VERSION;
use crate::cache::{CacheKey, Outcome, Record};
use crate::image::{Descriptor, Manifest};
use crate::registry::{RegistryOptions, RemoteArtifact};
use crate::store::{Expected, Store};

/// The records of the `--cache-from` caches that could be read.
#[derive(Debug, Default)]
pub struct ImportedCache {
    records: HashMap<CacheKey, Entry>,
    sources: Vec<Loaded>,
}

#[derive(Debug)]
struct Entry {
    record: Record,
    /// The layer's descriptor in its cache's manifest.
    layer: Option<Descriptor>,
    /// Index into `sources`.
    source: usize,
}

#[derive(Debug)]
enum Loaded {
    Registry(Box<RemoteArtifact>),
    Local(Layout),
}

impl ImportedCache {
    /// Load the caches `sources` name, in order (the first cache with a key answers for it).
    /// Returns the warnings for caches that could not be read.
    pub fn load(sources: &[CacheSource], opts: &RegistryOptions) -> (Self, Vec<String>) {
        let mut cache = Self::default();
        let mut warnings = Vec::new();
        for source in sources {
            match load_one(source, opts) {
                Ok((loaded, manifest, config)) => cache.add(loaded, &manifest, config),
                Err(why) => warnings.push(format!("failed to import cache {source}: {why}")),
            }
        }
        (cache, warnings)
    }

    fn add(&mut self, loaded: Loaded, manifest: &Manifest, config: CacheConfig) {
        let source = self.sources.len();
        self.sources.push(loaded);
        for record in config.records {
            if record.preimage.version != KEY_VERSION {
                continue;
            }
            let layer = match &record.outcome {
                Outcome::Unchanged => None,
                Outcome::Layer { digest, size, .. } => {
                    match manifest
                        .layers
                        .iter()
                        .find(|l| l.digest == *digest && l.size == *size)
                    {
                        Some(l) => Some(l.clone()),
                        // A record whose layer the cache does not carry cannot be used.
                        None => continue,
                    }
                }
            };
            self.records.entry(record.preimage.key()).or_insert(Entry {
                record,
                layer,
                source,
            });
        }
    }

    /// Records loaded.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether a cache has a record for `key`.
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.records.contains_key(key)
    }

    /// The record of `key` with its layer in `store` (fetched and verified when missing), or
    /// `None` when no cache has the key.
    pub fn fetch(&self, key: &CacheKey, store: &Store) -> Option<Result<Record, String>> {
        let entry = self.records.get(key)?;
        let Some(layer) = &entry.layer else {
            return Some(Ok(entry.record.clone()));
        };
        let diff_id = match &entry.record.outcome {
            Outcome::Layer { diff_id, .. } => DiffId(*diff_id),
            Outcome::Unchanged => unreachable!("a record with a layer descriptor has a layer"),
        };
        if store.content().contains(&layer.digest) {
            return Some(Ok(entry.record.clone()));
        }
        let fetched =
            match &self.sources[entry.source] {
                Loaded::Registry(remote) => remote
                    .fetch_layer(store, layer, Some(diff_id))
                    .map_err(|e| {
                        format!(
                            "layer {} from {}: {}",
                            layer.digest,
                            remote.repository(),
                            chain(&e)
                        )
                    }),
                Loaded::Local(layout) => {
                    copy_verified(store, &layout.blob_path(&layer.digest), layer, diff_id).map_err(
                        |e| {
                            format!(
                                "layer {} from {}: {e}",
                                layer.digest,
                                layout.dir().display()
                            )
                        },
                    )
                }
            };
        Some(fetched.map(|()| entry.record.clone()))
    }
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Read one cache: its manifest and config.
fn load_one(
    source: &CacheSource,
    opts: &RegistryOptions,
) -> Result<(Loaded, Manifest, CacheConfig), String> {
    let (loaded, manifest, config_bytes) = match source {
        CacheSource::Registry(reference) => {
            let remote = RemoteArtifact::fetch(reference, opts).map_err(|e| chain(&e))?;
            let manifest = remote.manifest.clone();
            let config = remote.config.clone();
            (Loaded::Registry(Box::new(remote)), manifest, config)
        }
        CacheSource::Local { dir, tag, digest } => {
            let layout = Layout::open(dir).map_err(|e| e.to_string())?;
            let desc = layout
                .resolve(tag, digest.as_ref())
                .map_err(|e| e.to_string())?
                .ok_or_else(|| match digest {
                    Some(d) => format!("{} has no manifest {d}", dir.display()),
                    None => format!("{} has no cache tagged `{tag}`", dir.display()),
                })?;
            let manifest_bytes = read_verified(&layout, &desc)?;
            let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
                .map_err(|e| format!("manifest {}: {e}", desc.digest))?;
            let config = read_verified(&layout, &manifest.config)?;
            (Loaded::Local(layout), manifest, config)
        }
    };
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(format!(
            "not a kiln build cache (its config is `{}`, not `{CONFIG_MEDIA_TYPE}`)",
            manifest.config.media_type
        ));
    }
    let config: CacheConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| format!("cache config: {e}"))?;
    Ok((loaded, manifest, config))
}

/// A small blob of a layout, checked against its descriptor.
fn read_verified(layout: &Layout, desc: &Descriptor) -> Result<Vec<u8>, String> {
    const LIMIT: u64 = crate::registry::CONFIG_LIMIT;
    if desc.size > LIMIT {
        return Err(format!("blob {} is larger than {LIMIT} bytes", desc.digest));
    }
    let path = layout.blob_path(&desc.digest);
    let bytes = fs_err::read(&path).map_err(|e| e.to_string())?;
    let actual = Digest::of(&bytes);
    if actual != desc.digest || bytes.len() as u64 != desc.size {
        return Err(format!(
            "{} does not match its descriptor ({} bytes, {actual})",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Copy the layer blob at `from` into `store`, storing it only if its digest and size are
/// `desc`'s and its uncompressed content's digest is `diff_id` — all checked in one read.
pub fn copy_verified(
    store: &Store,
    from: &Path,
    desc: &Descriptor,
    diff_id: DiffId,
) -> io::Result<()> {
    let mut file = fs_err::File::open(from)?;
    let (compression, magic) = Compression::sniff(&mut file)?;
    let writer = store.content().writer().map_err(io::Error::other)?;
    let mut tee = Tee {
        inner: io::Cursor::new(magic).chain(file),
        copy: writer,
    };
    let mut uncompressed = DigestWriter::new(io::sink());
    {
        let mut decoder = compression.decoder(&mut tee)?;
        io::copy(&mut decoder, &mut uncompressed)?;
    }
    // Bytes after the end of the compressed stream still belong to the blob.
    io::copy(&mut tee, &mut io::sink())?;
    let (_, actual_diff_id, _) = uncompressed.finish();
    if actual_diff_id != diff_id.0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("its uncompressed content is {actual_diff_id}, but the cache says {diff_id}"),
        ));
    }
    tee.copy
        .commit(Some(Expected {
            digest: desc.digest,
            size: Some(desc.size),
        }))
        .map_err(io::Error::other)?;
    Ok(())
}

/// A reader that writes what it reads into `copy`.
struct Tee<R: Read, W: Write> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn record(n: u8, layer: Option<&Descriptor>) -> Record {
        let mut p = crate::cache::Preimage::new("run", None);
        p.field("n", n);
        Record {
            preimage: p,
            outcome: match layer {
                None => Outcome::Unchanged,
                Some(d) => Outcome::Layer {
                    digest: d.digest,
                    diff_id: Digest::of(b"tar"),
                    size: d.size,
                    uncompressed_size: 3,
                },
            },
        }
    }

    #[test]
    fn records_need_their_layer_in_the_manifest_and_the_first_cache_wins() {
        let layer = Descriptor::new(
            crate::image::media_type::OCI_LAYER_GZIP,
            Digest::of(b"blob"),
            4,
        );
        let other = Descriptor::new(
            crate::image::media_type::OCI_LAYER_GZIP,
            Digest::of(b"other"),
            5,
        );
        let manifest = |layers: Vec<Descriptor>| Manifest {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            config: Descriptor::new(CONFIG_MEDIA_TYPE, Digest::of(b"c"), 1),
            layers,
            subject: None,
            annotations: Default::default(),
        };
        let mut old = record(4, None);
        old.preimage.version = "kiln.cache.v0".to_owned();
        let mut cache = ImportedCache::default();
        let dir = tempfile::tempdir().unwrap();
        let layout = || Loaded::Local(Layout::create(dir.path()).unwrap());
        cache.add(
            layout(),
            &manifest(vec![layer.clone()]),
            CacheConfig {
                records: vec![
                    record(1, Some(&layer)),
                    record(2, Some(&other)),
                    record(3, None),
                    old.clone(),
                ],
            },
        );
        // Record 2's layer is not in its manifest, record 4 has another key version.
        assert_eq!(cache.len(), 2);
        assert!(cache.contains(&record(1, Some(&layer)).preimage.key()));
        assert!(!cache.contains(&record(2, Some(&other)).preimage.key()));
        assert!(cache.contains(&record(3, None).preimage.key()));
        assert!(!cache.contains(&old.preimage.key()));
        // A second cache with the same key does not replace the first one's record.
        cache.add(
            layout(),
            &manifest(vec![other.clone()]),
            CacheConfig {
                records: vec![record(3, None), record(2, Some(&other))],
            },
        );
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.records[&record(3, None).preimage.key()].source, 0);
        assert_eq!(
            cache.records[&record(2, Some(&other)).preimage.key()].source,
            1
        );
        // An unchanged record needs nothing fetched.
        let store = Store::open(&dir.path().join("store")).unwrap();
        let got = cache
            .fetch(&record(3, None).preimage.key(), &store)
            .unwrap()
            .unwrap();
        assert_eq!(got.outcome, Outcome::Unchanged);
        assert!(
            cache
                .fetch(&record(9, None).preimage.key(), &store)
                .is_none()
        );
    }

    #[test]
    fn a_layer_is_stored_only_when_digest_size_and_diff_id_match() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("store")).unwrap();
        let tar = vec![7u8; 10_000];
        let blob = gzip(&tar);
        let path = d.path().join("blob");
        fs_err::write(&path, &blob).unwrap();
        let desc = Descriptor::new(
            crate::image::media_type::OCI_LAYER_GZIP,
            Digest::of(&blob),
            blob.len() as u64,
        );
        let wrong = DiffId(Digest::of(b"something else"));
        let err = copy_verified(&store, &path, &desc, wrong).unwrap_err();
        assert!(err.to_string().contains("uncompressed content"), "{err}");
        assert!(!store.content().contains(&desc.digest));
        let mut bad_size = desc.clone();
        bad_size.size += 1;
        assert!(copy_verified(&store, &path, &bad_size, DiffId(Digest::of(&tar))).is_err());
        assert!(!store.content().contains(&desc.digest));
        copy_verified(&store, &path, &desc, DiffId(Digest::of(&tar))).unwrap();
        assert_eq!(store.content().read(&desc.digest).unwrap(), blob);
    }
}
