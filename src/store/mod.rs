//! The on-disk store: content (blobs by digest), image references, locks and garbage collection
//! of images' blobs.
//!
//! Images are manifests: those a name points at, and untagged ones (Docker's `<none>` images:
//! loaded without a name, or left dangling when their last tag moved to another image; see
//! `refs`). An image is found by name, by image ID (the config digest: `sha256:…`, bare hex, or
//! a unique prefix of at least 4 hex digits, as Docker's containerd image store accepts), or by
//! manifest digest. Removing an image's last name removes the image, as `docker rmi` does.
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
pub use refs::{RefMap, RefTarget, Refs};

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

/// The outcome of removing references or images.
#[derive(Debug, Default)]
pub struct Removal {
    /// Names removed.
    pub untagged: Vec<ImageRef>,
    /// Image IDs whose last reference went, with the blobs freed.
    pub deleted: Vec<Digest>,
    /// Bytes of the blobs deleted.
    pub bytes: u64,
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

    /// All names and what they point at.
    pub fn refs(&self) -> Result<RefMap> {
        Ok(refs::load(&self.layout)?.into_names())
    }

    /// Names and untagged images.
    pub fn all_refs(&self) -> Result<Refs> {
        refs::load(&self.layout)
    }

    /// Point `reference` at a manifest already in the store. The image the name pointed at
    /// before stays, as an untagged (dangling) image, when this was its last name and no other
    /// image of the store has its ID (as `docker tag`, `docker build -t`, `docker pull` and
    /// `docker load` leave a `<none>` image behind).
    pub fn set_ref(&self, reference: &ImageRef, manifest: &Descriptor) -> Result<()> {
        if !self.content.contains(&manifest.digest) {
            return Err(StoreError::BlobNotFound(manifest.digest));
        }
        let id = self.image_id(manifest);
        refs::update(&self.layout, |refs| {
            // The image is named now: an untagged entry of its ID (another manifest) goes.
            let same_id: Vec<Digest> = refs
                .untagged()
                .keys()
                .filter(|m| **m != manifest.digest)
                .filter(|m| id.is_some() && self.image_id_of(m) == id)
                .copied()
                .collect();
            for m in &same_id {
                refs.remove_untagged(m);
            }
            if let Some(old) = refs.set(reference.clone(), manifest.clone())
                && let Some(old_id) = self.image_id(&old)
                && !refs
                    .manifests()
                    .iter()
                    .any(|m| self.image_id(m) == Some(old_id))
            {
                refs.keep_untagged(old);
            }
            Ok(())
        })
    }

    /// Keep `manifest` (already in the store) as an image without a name, unless a name points
    /// at it or another image of the store has the same ID. Returns the manifest that stands
    /// for the image in the store: `manifest`, or the one of the existing image with its ID.
    pub fn keep_untagged(&self, manifest: &Descriptor) -> Result<Descriptor> {
        if !self.content.contains(&manifest.digest) {
            return Err(StoreError::BlobNotFound(manifest.digest));
        }
        let id = self
            .image_id(manifest)
            .ok_or(StoreError::BlobNotFound(manifest.digest))?;
        refs::update(&self.layout, |refs| {
            if let Some(same) = refs
                .manifests()
                .into_iter()
                .find(|m| m.digest == manifest.digest || self.image_id(m) == Some(id))
            {
                return Ok(same);
            }
            refs.keep_untagged(manifest.clone());
            Ok(manifest.clone())
        })
    }

    /// The manifest of the image with ID `id` (config digest), named or untagged, if the store
    /// has one (a named one first).
    pub fn manifest_with_id(&self, id: &Digest) -> Result<Option<Descriptor>> {
        Ok(self
            .all_refs()?
            .manifests()
            .into_iter()
            .find(|m| self.image_id(m).as_ref() == Some(id)))
    }

    /// The image ID (config digest) of a stored manifest, if it can be read.
    fn image_id(&self, manifest: &Descriptor) -> Option<Digest> {
        self.image_id_of(&manifest.digest)
    }

    fn image_id_of(&self, manifest: &Digest) -> Option<Digest> {
        let bytes = self.content.read(manifest).ok()?;
        let parsed: Manifest = serde_json::from_slice(&bytes).ok()?;
        Some(parsed.config.digest)
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
    /// image inspect` and `docker rmi` accept them; with the names that point at it (none for
    /// an untagged image).
    pub fn find(&self, query: &str) -> Result<(StoredImage, Vec<ImageRef>)> {
        let refs = self.all_refs()?;
        if let Ok(r) = ImageRef::parse(query)
            && let Some(target) = refs.names().get(&r)
        {
            let image = self.image(&target.manifest)?;
            let names = refs.names_of(&target.manifest.digest);
            return Ok((image, names));
        }
        let Some(id_query) = id_query(query) else {
            return Err(StoreError::ImageNotFound(query.to_owned()));
        };
        let mut images = Vec::new();
        for manifest in refs.manifests() {
            // An image whose blobs cannot be read is no match (`kiln system check` reports it).
            if let Ok(image) = self.image(&manifest) {
                images.push(image);
            }
        }
        let keys: Vec<(Digest, Digest)> = images
            .iter()
            .map(|i| (i.id(), i.manifest_descriptor.digest))
            .collect();
        match match_id(id_query, &keys) {
            Ok(Some(i)) => {
                let image = images.swap_remove(i);
                let names = refs.names_of(&image.manifest_descriptor.digest);
                Ok((image, names))
            }
            Ok(None) => Err(StoreError::ImageNotFound(query.to_owned())),
            Err(ids) => Err(StoreError::Ambiguous {
                query: query.to_owned(),
                candidates: ids.iter().map(Digest::short).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Remove names; an image left without any name is removed with them, and its blobs that
    /// no other image needs are deleted (`docker rmi NAME`).
    pub fn remove(&self, names: &[ImageRef]) -> Result<Removal> {
        self.remove_with(|refs, removal| {
            let mut removed = Vec::new();
            for name in names {
                if let Some(m) = refs.remove_name(name) {
                    removal.untagged.push(name.clone());
                    removed.push(m);
                }
            }
            removed
        })
    }

    /// Remove an untagged image by its manifest digest (`docker rmi ID` of a `<none>` image);
    /// an image that has names is left alone (remove those with [`Store::remove`]).
    pub fn remove_untagged(&self, manifest: &Digest) -> Result<Removal> {
        self.remove_with(|refs, _| refs.remove_untagged(manifest).into_iter().collect())
    }

    /// Remove every untagged image (`docker image prune`).
    pub fn remove_all_untagged(&self) -> Result<Removal> {
        self.remove_with(|refs, _| {
            let all: Vec<Digest> = refs.untagged().keys().copied().collect();
            all.iter().filter_map(|m| refs.remove_untagged(m)).collect()
        })
    }

    /// Change the refs with `change`, which returns the manifests it took a name or untagged
    /// entry from; those no longer images afterwards are deleted with their blobs that no
    /// remaining image needs.
    fn remove_with(
        &self,
        change: impl FnOnce(&mut Refs, &mut Removal) -> Vec<Descriptor>,
    ) -> Result<Removal> {
        let _content = lock::acquire(&self.layout, LockName::Content, LockMode::Exclusive)?;
        let mut removal = Removal::default();
        let (removed_targets, remaining) = refs::update(&self.layout, |refs| {
            let removed = change(refs, &mut removal);
            Ok((removed, refs.manifests()))
        })?;
        // Everything still an image stays; the removed images' unreachable blobs go.
        let mut live = BTreeSet::new();
        for manifest in &remaining {
            if let Ok(image) = self.image(manifest) {
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
                if !live.contains(&blob) && self.content.contains(&blob) {
                    removal.bytes += self.content.size(&blob).unwrap_or(0);
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

/// Which of `images` (image ID, manifest digest) the hex digits `id_query` select: those whose
/// ID starts with them, or whose manifest digest they are in full. Several manifests of one
/// image ID are one image (the first stands for it); `Err` lists the IDs of an ambiguous query.
fn match_id(id_query: &str, images: &[(Digest, Digest)]) -> Result<Option<usize>, Vec<Digest>> {
    let mut hits: Vec<(usize, Digest)> = Vec::new();
    for (i, (id, manifest)) in images.iter().enumerate() {
        let hit =
            id.hex().starts_with(id_query) || (id_query.len() == 64 && manifest.hex() == id_query);
        if hit && !hits.iter().any(|(_, h)| h == id) {
            hits.push((i, *id));
        }
    }
    match hits[..] {
        [] => Ok(None),
        [(i, _)] => Ok(Some(i)),
        _ => Err(hits.into_iter().map(|(_, id)| id).collect()),
    }
}

/// The hex digits of `query` when it can be an image ID or a prefix of one: `sha256:` and 4 to
/// 64 hex digits, or those digits alone (Docker's `^(sha256:)?([a-f0-9]{4,64})$`).
fn id_query(query: &str) -> Option<&str> {
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    let is_hex = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ((4..=64).contains(&hex.len()) && is_hex).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image of one layer with `content`, its config labelled by `label` (so that two images
    /// with the same layer differ in ID). Returns the manifest descriptor.
    fn put_image(store: &Store, label: &str, content: &[u8]) -> Descriptor {
        let layer = store.content().put(content).unwrap();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"l": label}},
            "rootfs": {"type": "layers", "diff_ids": [layer.digest.to_string()]},
        });
        let config = store.put_json(media_type::OCI_CONFIG, &config).unwrap();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config,
            layers: vec![Descriptor::new(
                media_type::OCI_LAYER_TAR,
                layer.digest,
                layer.size,
            )],
            subject: None,
            annotations: Default::default(),
        };
        store.put_json(media_type::OCI_MANIFEST, &manifest).unwrap()
    }

    fn name(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_moved_tag_leaves_the_old_image_untagged() {
        let (_dir, store) = open();
        let old = put_image(&store, "old", b"layer one");
        let new = put_image(&store, "new", b"layer two");
        store.set_ref(&name("app:1"), &old).unwrap();
        store.set_ref(&name("keep:1"), &old).unwrap();
        // The old image keeps a name: nothing dangles.
        store.set_ref(&name("app:1"), &new).unwrap();
        assert!(store.all_refs().unwrap().untagged().is_empty());
        // Its last name moves: it stays, untagged, found by ID.
        store.set_ref(&name("keep:1"), &new).unwrap();
        let refs = store.all_refs().unwrap();
        assert_eq!(refs.untagged().keys().collect::<Vec<_>>(), [&old.digest]);
        let old_id = store.image(&old).unwrap().id();
        let (found, names) = store.find(&old_id.hex()[..8]).unwrap();
        assert_eq!(found.manifest_descriptor, old);
        assert!(names.is_empty());
        // Naming it again makes it a named image.
        store.set_ref(&name("back:1"), &old).unwrap();
        let refs = store.all_refs().unwrap();
        assert!(refs.untagged().is_empty());
        assert_eq!(refs.names_of(&old.digest), [name("back:1")]);
    }

    #[test]
    fn a_tag_moved_to_another_manifest_of_the_same_image_leaves_nothing() {
        let (_dir, store) = open();
        let a = put_image(&store, "same", b"layer");
        // The same config (ID) in a manifest with other annotations.
        let mut m: Manifest =
            serde_json::from_slice(&store.content().read(&a.digest).unwrap()).unwrap();
        m.annotations.insert("x".into(), "y".into());
        let b = store.put_json(media_type::OCI_MANIFEST, &m).unwrap();
        store.set_ref(&name("app:1"), &a).unwrap();
        store.set_ref(&name("app:1"), &b).unwrap();
        assert!(store.all_refs().unwrap().untagged().is_empty());
        // Nor does keep_untagged add a second image of one ID.
        assert_eq!(store.keep_untagged(&a).unwrap(), b);
        assert!(store.all_refs().unwrap().untagged().is_empty());
        // An untagged image named through another manifest of its ID is untagged no more.
        let (_dir, store) = open();
        let u = put_image(&store, "same", b"layer");
        assert_eq!(store.keep_untagged(&u).unwrap(), u);
        m.annotations.insert("x".into(), "z".into());
        let c = store.put_json(media_type::OCI_MANIFEST, &m).unwrap();
        store.set_ref(&name("app:2"), &c).unwrap();
        let refs = store.all_refs().unwrap();
        assert!(refs.untagged().is_empty(), "{refs:?}");
        assert_eq!(refs.manifests(), [c]);
    }

    #[test]
    fn ids_are_found_by_full_bare_and_short_forms() {
        let (_dir, store) = open();
        let m = put_image(&store, "x", b"layer");
        assert_eq!(store.keep_untagged(&m).unwrap(), m);
        let id = store.image(&m).unwrap().id();
        for q in [
            id.to_string(),
            id.hex(),
            id.hex()[..12].to_owned(),
            format!("sha256:{}", &id.hex()[..4]),
            m.digest.to_string(),
        ] {
            let (found, names) = store.find(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(found.manifest_descriptor, m, "{q}");
            assert!(names.is_empty());
        }
        // Too short, not hex, or a prefix of the manifest digest rather than the ID.
        for q in [
            id.hex()[..3].to_owned(),
            "zzzz".to_owned(),
            m.digest.hex()[..12].to_owned(),
        ] {
            assert!(
                matches!(store.find(&q), Err(StoreError::ImageNotFound(_))),
                "{q}"
            );
        }
        // A name wins over an ID prefix that reads as a name.
        let other = put_image(&store, "y", b"other layer");
        let prefix = &id.hex()[..6];
        store.set_ref(&name(prefix), &other).unwrap();
        assert_eq!(store.find(prefix).unwrap().0.manifest_descriptor, other);
    }

    #[test]
    fn id_prefixes_select_one_image_or_are_ambiguous() {
        let d = |hex: &str| Digest::from_hex(&format!("{hex:0<64}")).unwrap();
        let images = [
            (d("abcd1"), d("f1")),
            (d("abcd2"), d("f2")),
            (d("abcd1"), d("f3")), // a second manifest of the first image
        ];
        assert_eq!(match_id("abcd1", &images), Ok(Some(0)));
        assert_eq!(match_id("abcd2", &images), Ok(Some(1)));
        assert_eq!(match_id("abcd", &images), Err(vec![d("abcd1"), d("abcd2")]));
        assert_eq!(match_id("abce", &images), Ok(None));
        assert_eq!(match_id(&d("f3").hex(), &images), Ok(Some(2)));
        assert_eq!(id_query("sha256:abcd"), Some("abcd"));
        assert_eq!(id_query("abc"), None);
        assert_eq!(id_query("ABCD"), None);
        assert_eq!(id_query(&"a".repeat(65)), None);
        assert_eq!(id_query("app:1"), None);
    }

    #[test]
    fn removing_the_last_name_removes_the_image_and_untagged_images_by_id() {
        let (dir, store) = open();
        let shared = b"shared layer";
        let a = put_image(&store, "a", shared);
        let b = put_image(&store, "b", shared);
        store.set_ref(&name("a:1"), &a).unwrap();
        store.keep_untagged(&b).unwrap();
        let a_image = store.image(&a).unwrap();
        let b_image = store.image(&b).unwrap();

        // The untagged image's blobs count as used: removing `a` keeps the shared layer.
        let removal = store.remove(&[name("a:1")]).unwrap();
        assert_eq!(removal.untagged, [name("a:1")]);
        assert_eq!(removal.deleted, [a_image.id()]);
        assert!(!store.content().contains(&a.digest));
        assert!(!store.content().contains(&a_image.id()));
        assert!(b_image.blobs().all(|d| store.content().contains(&d)));
        assert!(store.all_refs().unwrap().untagged().contains_key(&b.digest));

        // A name removed does not make its image dangling; an untagged image goes by ID.
        assert!(removal.bytes > 0);
        let removal = store.remove_untagged(&b.digest).unwrap();
        assert!(removal.untagged.is_empty());
        assert_eq!(removal.deleted, [b_image.id()]);
        assert_eq!(store.all_refs().unwrap(), Refs::default());
        assert_eq!(
            fs_err::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn pruning_removes_untagged_images_only() {
        let (_dir, store) = open();
        let named = put_image(&store, "named", b"shared");
        let a = put_image(&store, "a", b"shared");
        let b = put_image(&store, "b", b"b only");
        store.set_ref(&name("app:1"), &named).unwrap();
        store.keep_untagged(&a).unwrap();
        store.keep_untagged(&b).unwrap();
        let ids = [store.image(&a).unwrap().id(), store.image(&b).unwrap().id()];
        let removal = store.remove_all_untagged().unwrap();
        let mut deleted = removal.deleted.clone();
        deleted.sort();
        let mut want = ids.to_vec();
        want.sort();
        assert_eq!(deleted, want);
        let refs = store.all_refs().unwrap();
        assert!(refs.untagged().is_empty());
        assert_eq!(refs.manifests(), std::slice::from_ref(&named));
        assert!(
            store
                .image(&named)
                .unwrap()
                .blobs()
                .all(|d| store.content().contains(&d))
        );
        assert!(!store.content().contains(&b.digest));
    }

    #[test]
    fn refs_json_without_untagged_images_reads_as_before() {
        let (dir, store) = open();
        let m = put_image(&store, "x", b"layer");
        let file = serde_json::json!({
            "version": 1,
            "refs": {"docker.io/library/app:1": {"manifest": m}},
        });
        fs_err::write(
            dir.path().join("refs.json"),
            serde_json::to_vec(&file).unwrap(),
        )
        .unwrap();
        let refs = store.all_refs().unwrap();
        assert_eq!(refs.names().len(), 1);
        assert!(refs.untagged().is_empty());
        // Written back, an empty list is left out: older kilns read the same file.
        store.set_ref(&name("app:2"), &m).unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&fs_err::read(dir.path().join("refs.json")).unwrap()).unwrap();
        assert!(written.get("untagged").is_none(), "{written}");
        store.remove(&[name("app:1"), name("app:2")]).unwrap();
        store.keep_untagged(&put_image(&store, "y", b"l")).unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&fs_err::read(dir.path().join("refs.json")).unwrap()).unwrap();
        assert_eq!(
            written["untagged"].as_object().unwrap().len(),
            1,
            "{written}"
        );
    }
}
