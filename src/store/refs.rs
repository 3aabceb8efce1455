//! Image references and untagged images, kept in `refs.json`:
//!
//! * names: normalized `name:tag` (or `name@digest`) → manifest descriptor;
//! * untagged images: manifests that are images of the store without any name, as Docker's
//!   `<none>` images — loaded from an archive that named them not (`docker save IMAGE_ID`), or
//!   left "dangling" when the last name they had moved to another image.
//!
//! Invariant kept by every change made through [`Refs`]: a manifest is untagged only while no
//! name points at it. Readers need no lock (the file is replaced atomically); writers hold the
//! `images` lock for the whole read-modify-write.
//!
//! Not responsible for: blobs (whether a manifest exists, which blobs an image needs: see the
//! store), or what an image ID is (the config digest, read from the manifest by the store).

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};
use snapshotter::Digest;

use super::content::sync_dir;
use super::layout::{Layout, LockName};
use super::lock::{LockMode, acquire};
use super::{Result, StoreError};
use crate::image::{Descriptor, ImageRef};

/// The format version of `refs.json`. The `untagged` list was added without a new version:
/// a kiln that does not know it reads the file and ignores the list.
const FORMAT_VERSION: u32 = 1;

/// What one reference points at, and when it was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefTarget {
    pub manifest: Descriptor,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RefsFile {
    version: u32,
    refs: BTreeMap<String, RefTarget>,
    /// Images without a name, by manifest digest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    untagged: BTreeMap<String, RefTarget>,
}

/// All references, ordered by name.
pub type RefMap = BTreeMap<ImageRef, RefTarget>;

/// The whole of `refs.json`: names, and the images that have none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs {
    names: RefMap,
    untagged: BTreeMap<Digest, RefTarget>,
}

impl Refs {
    /// Every name and what it points at.
    pub fn names(&self) -> &RefMap {
        &self.names
    }

    /// The names alone.
    pub fn into_names(self) -> RefMap {
        self.names
    }

    /// Images without a name, by manifest digest.
    pub fn untagged(&self) -> &BTreeMap<Digest, RefTarget> {
        &self.untagged
    }

    /// The names pointing at `manifest`, in order.
    pub fn names_of(&self, manifest: &Digest) -> Vec<ImageRef> {
        self.names
            .iter()
            .filter(|(_, t)| t.manifest.digest == *manifest)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Whether any name points at `manifest`.
    pub fn is_named(&self, manifest: &Digest) -> bool {
        self.names.values().any(|t| t.manifest.digest == *manifest)
    }

    /// Every image of the store (named or not), each manifest once, named ones first.
    pub fn manifests(&self) -> Vec<Descriptor> {
        let mut out: Vec<Descriptor> = Vec::new();
        for t in self.names.values() {
            if !out.iter().any(|d| d.digest == t.manifest.digest) {
                out.push(t.manifest.clone());
            }
        }
        out.extend(self.untagged.values().map(|t| t.manifest.clone()));
        out
    }

    /// Point `name` at `manifest` (which stops being untagged). Returns the manifest the name
    /// pointed at before when that one now has no name left: the caller decides whether it
    /// stays as an untagged image ([`Refs::keep_untagged`]) or goes.
    pub fn set(&mut self, name: ImageRef, manifest: Descriptor) -> Option<Descriptor> {
        self.untagged.remove(&manifest.digest);
        let digest = manifest.digest;
        let old = self.names.insert(name, RefTarget { manifest })?;
        (old.manifest.digest != digest && !self.is_named(&old.manifest.digest))
            .then_some(old.manifest)
    }

    /// Remove `name`; returns what it pointed at.
    pub fn remove_name(&mut self, name: &ImageRef) -> Option<Descriptor> {
        self.names.remove(name).map(|t| t.manifest)
    }

    /// Keep `manifest` as an image without a name, unless a name points at it. Returns whether
    /// it is (now or already) untagged.
    pub fn keep_untagged(&mut self, manifest: Descriptor) -> bool {
        if self.is_named(&manifest.digest) {
            return false;
        }
        self.untagged
            .entry(manifest.digest)
            .or_insert(RefTarget { manifest });
        true
    }

    /// Forget the untagged image `manifest`; returns whether it was one.
    pub fn remove_untagged(&mut self, manifest: &Digest) -> Option<Descriptor> {
        self.untagged.remove(manifest).map(|t| t.manifest)
    }
}

/// Read `refs.json`.
pub fn load(layout: &Layout) -> Result<Refs> {
    let path = layout.refs_file();
    let bytes = match fs_err::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Refs::default()),
        Err(e) => return Err(e.into()),
    };
    let file: RefsFile = serde_json::from_slice(&bytes).map_err(|source| StoreError::Metadata {
        path: path.clone(),
        source,
    })?;
    if file.version != FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat {
            path,
            version: file.version,
        });
    }
    let mut out = Refs::default();
    for (name, target) in file.refs {
        let r = ImageRef::parse(&name).map_err(|e| StoreError::BadRef {
            path: path.clone(),
            name,
            reason: e.to_string(),
        })?;
        out.names.insert(r, target);
    }
    for (key, target) in file.untagged {
        let digest: Digest =
            key.parse()
                .map_err(|e: snapshotter::DigestError| StoreError::BadRef {
                    path: path.clone(),
                    name: key.clone(),
                    reason: e.to_string(),
                })?;
        if digest != target.manifest.digest {
            return Err(StoreError::BadRef {
                path: path.clone(),
                name: key,
                reason: format!("the entry points at {}", target.manifest.digest),
            });
        }
        // A name set by an older kiln (which does not know this list) wins.
        if !out.is_named(&digest) {
            out.untagged.insert(digest, target);
        }
    }
    Ok(out)
}

/// Change the references under the `images` lock and write them back atomically.
pub fn update<T>(layout: &Layout, change: impl FnOnce(&mut Refs) -> Result<T>) -> Result<T> {
    fs_err::create_dir_all(layout.locks_dir())?;
    let _guard = acquire(layout, LockName::Images, LockMode::Exclusive)?;
    let mut refs = load(layout)?;
    let encode = |refs: &Refs| {
        let file = RefsFile {
            version: FORMAT_VERSION,
            refs: refs
                .names
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            untagged: refs
                .untagged
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        serde_json::to_vec_pretty(&file).expect("refs serialize")
    };
    let before = encode(&refs);
    let out = change(&mut refs)?;
    let bytes = encode(&refs);
    // Nothing to write (a rebuild tagging the image the name already has).
    if bytes == before {
        return Ok(out);
    }
    let path = layout.refs_file();
    let mut tmp = tempfile::NamedTempFile::new_in(layout.root())?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| StoreError::Io(e.error))?;
    sync_dir(layout.root())?;
    Ok(out)
}
