//! The directory of a `type=local` cache: an OCI image layout (image-layout spec: `oci-layout`,
//! `index.json`, `blobs/sha256/<hex>`), as BuildKit's local cache is. `index.json` names each
//! exported cache manifest by its tag (`org.opencontainers.image.ref.name`); exporting again
//! under a tag replaces that entry and keeps the others.
//!
//! Blobs are written to a temp file in their directory and renamed, so a reader never sees a
//! partial blob; `index.json` is rewritten the same way under an exclusive `flock` of
//! `index.json.lock`, so concurrent exports of several tags to one directory keep every tag.
//!
//! Not responsible for: what the manifests hold (see `share`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use snapshotter::Digest;

use crate::image::{Descriptor, Index, media_type};

/// The annotation that names an entry of `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The layout at `dir`, which must exist (`--cache-from`).
    pub fn open(dir: &Path) -> io::Result<Self> {
        let index = dir.join("index.json");
        if !index.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not an OCI image layout (no index.json)",
                    dir.display()
                ),
            ));
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The layout at `dir`, created when missing (`--cache-to`).
    pub fn create(dir: &Path) -> io::Result<Self> {
        fs_err::create_dir_all(dir.join("blobs").join("sha256"))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `digest` is (or would be).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    /// Whether the layout has the blob `desc` (by name and size: blobs are only ever renamed
    /// into place complete).
    pub fn has_blob(&self, desc: &Descriptor) -> bool {
        fs_err::metadata(self.blob_path(&desc.digest)).is_ok_and(|m| m.len() == desc.size)
    }

    /// Write a blob held in memory.
    pub fn put_bytes(&self, bytes: &[u8]) -> io::Result<Digest> {
        let digest = Digest::of(bytes);
        let path = self.blob_path(&digest);
        if fs_err::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(digest);
        }
        write_atomic(&path, bytes)?;
        Ok(digest)
    }

    /// Copy the blob at `from` (a verified blob of the store) in as `digest`.
    pub fn copy_in(&self, from: &Path, digest: &Digest) -> io::Result<()> {
        let path = self.blob_path(digest);
        let dir = path.parent().expect("blobs live in a directory");
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        io::copy(&mut fs_err::File::open(from)?, tmp.as_file_mut())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The manifest named `tag` in `index.json`, or the entry with `digest` when given.
    pub fn resolve(&self, tag: &str, digest: Option<&Digest>) -> io::Result<Option<Descriptor>> {
        let index = self.read_index()?;
        Ok(index.manifests.into_iter().find(|d| match digest {
            Some(want) => d.digest == *want,
            None => d.annotations.get(REF_NAME).map(String::as_str) == Some(tag),
        }))
    }

    /// Name the manifest `desc` `tag` in `index.json` (replacing the entry of that tag).
    pub fn set_tag(&self, tag: &str, desc: &Descriptor) -> io::Result<()> {
        let lock = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("index.json.lock"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        let mut index = match self.read_index() {
            Ok(index) => index,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index {
                schema_version: 2,
                media_type: Some(media_type::OCI_INDEX.to_owned()),
                artifact_type: None,
                manifests: Vec::new(),
                subject: None,
                annotations: Default::default(),
            },
            Err(e) => return Err(e),
        };
        index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
        let mut entry = desc.clone();
        entry
            .annotations
            .insert(REF_NAME.to_owned(), tag.to_owned());
        index.manifests.push(entry);
        write_atomic(
            &self.dir.join("index.json"),
            &crate::image::canonical_json(&index),
        )
    }

    fn read_index(&self) -> io::Result<Index> {
        let path = self.dir.join("index.json");
        let bytes = fs_err::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }
}

/// Temp file in the same directory, fsync, rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("a file inside a directory");
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_kept_side_by_side_and_replaced_one_by_one() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::create(d.path()).unwrap();
        assert!(Layout::open(d.path()).is_err(), "no index.json yet");
        let a = layout.put_bytes(b"manifest a").unwrap();
        let b = layout.put_bytes(b"manifest b").unwrap();
        let desc = |digest| Descriptor::new(media_type::OCI_MANIFEST, digest, 10);
        layout.set_tag("latest", &desc(a)).unwrap();
        layout.set_tag("v2", &desc(b)).unwrap();
        layout.set_tag("latest", &desc(b)).unwrap();
        let layout = Layout::open(d.path()).unwrap();
        assert_eq!(layout.resolve("latest", None).unwrap().unwrap().digest, b);
        assert_eq!(layout.resolve("v2", None).unwrap().unwrap().digest, b);
        assert_eq!(layout.resolve("x", None).unwrap(), None);
        assert_eq!(
            layout.resolve("ignored", Some(&b)).unwrap().unwrap().digest,
            b
        );
        assert_eq!(
            fs_err::read(layout.blob_path(&a)).unwrap(),
            b"manifest a".to_vec()
        );
        assert!(layout.has_blob(&desc(a)));
        assert!(!layout.has_blob(&Descriptor::new("x", a, 11)));
        let index: Index =
            serde_json::from_slice(&fs_err::read(d.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index.manifests.len(), 2);
        assert_eq!(
            fs_err::read_to_string(d.path().join("oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
    }
}
