//! The on-disk store: content (blobs by digest), image references, locks and garbage collection
//! of images' blobs.
//!
//! Crash safety (DESIGN.md decision 1): every file is written temp → fsync → rename → fsync dir,
//! so an interrupted kiln leaves either the old or the new state, never a half-written one.
//! Not responsible for: how images are built, pulled or pushed.

pub mod content;
pub mod layout;
pub mod lock;
pub mod refs;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use snapshotter::Digest;

pub use content::{BlobInfo, BlobWriter, ContentStore, Expected, StagedBlob};
pub use layout::{Layout, LockName};
pub use refs::{RefMap, RefTarget};

use crate::image::{self, Descriptor, ImageConfig, ImageRef, Manifest, media_type};
use lock::{LockGuard, LockMode};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("locking {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {0} is not in the store")]
    BlobNotFound(Digest),
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    Corrupt { digest: Digest, actual: Digest },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("reading {path}")]
    Metadata {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} has format version {version}, which this kiln does not know")]
    UnsupportedFormat { path: PathBuf, version: u32 },
    #[error("{path} holds an invalid reference `{name}`: {reason}")]
    BadRef {
        path: PathBuf,
        name: String,
        reason: String,
    },
    #[error("blob {digest} is not a valid {what}")]
    BadJson {
        digest: Digest,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest {digest} has media type `{media_type}`, which is not an image manifest")]
    NotAManifest { digest: Digest, media_type: String },
    #[error("no such image: {0}")]
    ImageNotFound(String),
    #[error("`{query}` matches several images ({candidates}); use a longer ID or a name")]
    Ambiguous { query: String, candidates: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An image in the store: its manifest and config.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub manifest_descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

impl StoredImage {
    /// The image ID as Docker defines it: the config's digest.
    pub fn id(&self) -> Digest {
        self.manifest.config.digest
    }

    /// Sum of the blobs that make up the image (manifest, config, layers).
    pub fn content_size(&self) -> u64 {
        self.manifest_descriptor.size
            + self.manifest.config.size
            + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// Every blob the image needs.
    pub fn blobs(&self) -> impl Iterator<Item = Digest> + '_ {
        [self.manifest_descriptor.digest, self.manifest.config.digest]
            .into_iter()
            .chain(self.manifest.layers.iter().map(|l| l.digest))
    }
}

/// The outcome of removing one reference.
#[derive(Debug, Default)]
pub struct Removal {
    pub untagged: Vec<ImageRef>,
    /// Image IDs whose last reference went, with the blobs freed.
    pub deleted: Vec<Digest>,
}

/// An open store.
#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
    content: ContentStore,
}

impl Store {
    /// The default root: `/var/lib/kiln` for root, else `$XDG_DATA_HOME/kiln`
    /// (`~/.local/share/kiln`).
    pub fn default_root() -> PathBuf {
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/kiln");
        }
        let data_home = std::env::var_os("XDG_DATA_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/"));
                home.join(".local").join("share")
            });
        data_home.join("kiln")
    }

    /// Open (and create) the store at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let layout = Layout::new(root);
        fs_err::create_dir_all(layout.locks_dir())?;
        let content = ContentStore::open(&layout)?;
        Ok(Self { layout, content })
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Where the snapshotter keeps its snapshots (see `layout`); not created here.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.layout.snapshots_dir()
    }

    /// Where steps mount their root filesystems (see `layout`); not created here.
    pub fn mounts_dir(&self) -> PathBuf {
        self.layout.mounts_dir()
    }

    /// Member indexes and step records for incremental re-export (see `layout`).
    pub fn layers_dir(&self) -> PathBuf {
        self.layout.layers_dir()
    }

    /// Where RUN cache mounts live (see `layout`); not created here.
    pub fn build_cache_dir(&self) -> PathBuf {
        self.layout.build_cache_dir()
    }

    pub fn cache_mounts_dir(&self) -> PathBuf {
        self.layout.cache_mounts_dir()
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// Hold the content lock shared while blobs of images may be referenced without a ref
    /// (a build in progress); `rmi` waits for it exclusively before deleting blobs.
    pub fn lease(&self) -> Result<LockGuard> {
        lock::acquire(&self.layout, LockName::Content, LockMode::Shared)
    }

    /// Hold the content lock exclusively: no build is running while it is held (prune).
    pub fn exclusive_content_lock(&self) -> Result<LockGuard> {
        lock::acquire(&self.layout, LockName::Content, LockMode::Exclusive)
    }

    /// All references.
    pub fn refs(&self) -> Result<RefMap> {
        refs::load(&self.layout)
    }

    /// Point `reference` at a manifest already in the store.
    pub fn set_ref(&self, reference: &ImageRef, manifest: &Descriptor) -> Result<()> {
        if !self.content.contains(&manifest.digest) {
            return Err(StoreError::BlobNotFound(manifest.digest));
        }
        refs::update(&self.layout, |refs| {
            refs.insert(
                reference.clone(),
                RefTarget {
                    manifest: manifest.clone(),
                },
            );
            Ok(())
        })
    }

    /// Load a manifest and its config.
    pub fn image(&self, manifest: &Descriptor) -> Result<StoredImage> {
        if !media_type::is_manifest(&manifest.media_type) {
            return Err(StoreError::NotAManifest {
                digest: manifest.digest,
                media_type: manifest.media_type.clone(),
            });
        }
        let bytes = self.content.read(&manifest.digest)?;
        let parsed: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::BadJson {
                digest: manifest.digest,
                what: "image manifest",
                source,
            })?;
        let config_bytes = self.content.read(&parsed.config.digest)?;
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|source| StoreError::BadJson {
                digest: parsed.config.digest,
                what: "image config",
                source,
            })?;
        Ok(StoredImage {
            manifest_descriptor: manifest.clone(),
            manifest: parsed,
            config,
        })
    }

    /// The image a reference points at, if any.
    pub fn resolve(&self, reference: &ImageRef) -> Result<Option<StoredImage>> {
        match self.refs()?.get(reference) {
            Some(target) => self.image(&target.manifest).map(Some),
            None => Ok(None),
        }
    }

    /// Find an image by reference, full or short image ID, or manifest digest, as `docker
    /// image inspect` and `docker rmi` accept them.
    pub fn find(&self, query: &str) -> Result<(StoredImage, Vec<ImageRef>)> {
        let refs = self.refs()?;
        if let Ok(r) = ImageRef::parse(query)
            && let Some(target) = refs.get(&r)
        {
            let image = self.image(&target.manifest)?;
            let names = names_of(&refs, &target.manifest.digest);
            return Ok((image, names));
        }
        let id_query = query.strip_prefix("sha256:").unwrap_or(query);
        let looks_like_id = id_query.len() >= 4 && id_query.bytes().all(|b| b.is_ascii_hexdigit());
        if looks_like_id {
            let mut matches: Vec<(Digest, StoredImage)> = Vec::new();
            let mut seen = BTreeSet::new();
            for target in refs.values() {
                if !seen.insert(target.manifest.digest) {
                    continue;
                }
                let image = self.image(&target.manifest)?;
                let id_hex = image.id().hex();
                let manifest_hex = target.manifest.digest.hex();
                let hit = id_hex.starts_with(id_query)
                    || (id_query.len() == 64 && manifest_hex == id_query);
                if hit && !matches.iter().any(|(id, _)| *id == image.id()) {
                    matches.push((image.id(), image));
                }
            }
            match matches.len() {
                0 => {}
                1 => {
                    let (_, image) = matches.pop().expect("one match");
                    let names = refs
                        .iter()
                        .filter(|(_, t)| t.manifest.digest == image.manifest_descriptor.digest)
                        .map(|(r, _)| r.clone())
                        .collect();
                    return Ok((image, names));
                }
                _ => {
                    let candidates = matches
                        .iter()
                        .map(|(id, _)| id.short())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(StoreError::Ambiguous {
                        query: query.to_owned(),
                        candidates,
                    });
                }
            }
        }
        Err(StoreError::ImageNotFound(query.to_owned()))
    }

    /// Remove references (and, when `all_names`, every reference to the same image); blobs no
    /// longer reachable from any reference are deleted.
    pub fn remove(&self, names: &[ImageRef]) -> Result<Removal> {
        let _content = lock::acquire(&self.layout, LockName::Content, LockMode::Exclusive)?;
        let mut removal = Removal::default();
        let (removed_targets, remaining) = refs::update(&self.layout, |refs| {
            let mut removed = Vec::new();
            for name in names {
                if let Some(t) = refs.remove(name) {
                    removal.untagged.push(name.clone());
                    removed.push(t.manifest);
                }
            }
            Ok((removed, refs.clone()))
        })?;
        // Everything still referenced stays; the removed images' unreachable blobs go.
        let mut live = BTreeSet::new();
        for target in remaining.values() {
            if let Ok(image) = self.image(&target.manifest) {
                live.extend(image.blobs());
            }
        }
        for manifest in removed_targets {
            if live.contains(&manifest.digest) {
                continue;
            }
            let Ok(image) = self.image(&manifest) else {
                continue;
            };
            if !removal.deleted.contains(&image.id()) {
                removal.deleted.push(image.id());
            }
            for blob in image.blobs().collect::<Vec<_>>() {
                if !live.contains(&blob) {
                    self.content.delete(&blob)?;
                }
            }
        }
        Ok(removal)
    }

    /// Store a JSON document (manifest, config, index) as canonical JSON.
    pub fn put_json<T: serde::Serialize>(&self, media_type: &str, value: &T) -> Result<Descriptor> {
        let bytes = image::canonical_json(value);
        let info = self.content.put(&bytes)?;
        Ok(Descriptor::new(media_type, info.digest, info.size))
    }
}

fn names_of(refs: &RefMap, manifest: &Digest) -> Vec<ImageRef> {
    refs.iter()
        .filter(|(_, t)| t.manifest.digest == *manifest)
        .map(|(r, _)| r.clone())
        .collect()
}
