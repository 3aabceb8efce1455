//! Image references: normalized `name:tag` (or `name@digest`) → manifest descriptor, kept in
//! `refs.json`. Readers need no lock (the file is replaced atomically); writers hold the
//! `images` lock for the whole read-modify-write.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use super::content::sync_dir;
use super::layout::{Layout, LockName};
use super::lock::{LockMode, acquire};
use super::{Result, StoreError};
use crate::image::{Descriptor, ImageRef};

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
}

/// All references, ordered by name.
pub type RefMap = BTreeMap<ImageRef, RefTarget>;

/// Read all references.
pub fn load(layout: &Layout) -> Result<RefMap> {
    let path = layout.refs_file();
    let bytes = match fs_err::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RefMap::new()),
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
    let mut out = RefMap::new();
    for (name, target) in file.refs {
        let r = ImageRef::parse(&name).map_err(|e| StoreError::BadRef {
            path: path.clone(),
            name,
            reason: e.to_string(),
        })?;
        out.insert(r, target);
    }
    Ok(out)
}

/// Change the references under the `images` lock and write them back atomically.
pub fn update<T>(layout: &Layout, change: impl FnOnce(&mut RefMap) -> Result<T>) -> Result<T> {
    fs_err::create_dir_all(layout.locks_dir())?;
    let _guard = acquire(layout, LockName::Images, LockMode::Exclusive)?;
    let mut refs = load(layout)?;
    let encode = |refs: &RefMap| {
        let file = RefsFile {
            version: FORMAT_VERSION,
            refs: refs
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
