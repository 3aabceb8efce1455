//! A metadata-only view of an image's root filesystem: path → (type, mode, owner, mtime), built
//! by reading the layers' tar headers in order and applying OCI whiteouts.
//!
//! COPY needs two facts about the filesystem it writes into: whether the destination is an
//! existing directory (then a file is copied *into* it, as Docker does) and the metadata of
//! existing parent directories (a layer that creates `/tmp/x` must carry `/tmp` with the base's
//! mode 1777, exactly as an overlay copy-up would). Until snapshots land, this index answers both
//! without unpacking anything.
//!
//! Not responsible for: file contents; a layer's own safety checks (apply does those).

use std::collections::BTreeMap;
use std::io::{BufReader, Read};

use snapshotter::layer::{EntryKind, LayerPath};

use crate::image::Descriptor;
use crate::store::{ContentStore, StoreError};

/// Metadata of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub kind: MetaKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

/// The kinds COPY cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaKind {
    Directory,
    Symlink(String),
    Other,
}

/// Errors reading layers for the index.
#[derive(Debug, thiserror::Error)]
pub enum FsIndexError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading layer {digest}")]
    Layer {
        digest: snapshotter::Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {digest} has media type `{media_type}`, which kiln cannot read yet")]
    UnsupportedMediaType {
        digest: snapshotter::Digest,
        media_type: String,
    },
}

/// Path (clean, relative, e.g. `usr/bin`) → metadata.
#[derive(Debug, Clone, Default)]
pub struct FsIndex {
    entries: BTreeMap<LayerPath, Meta>,
}

impl FsIndex {
    /// Build the index of an image's layers (bottom first).
    pub fn from_layers(
        content: &ContentStore,
        layers: &[Descriptor],
    ) -> Result<Self, FsIndexError> {
        let mut index = Self::default();
        for layer in layers {
            let err = |source| FsIndexError::Layer {
                digest: layer.digest,
                source,
            };
            let file = BufReader::with_capacity(256 * 1024, content.open_blob(&layer.digest)?);
            let reader: Box<dyn Read> = match layer.media_type.as_str() {
                t if t.ends_with("+gzip") || t.ends_with(".tar.gzip") => {
                    Box::new(flate2::read::MultiGzDecoder::new(file))
                }
                t if t.ends_with(".tar") => Box::new(file),
                other => {
                    return Err(FsIndexError::UnsupportedMediaType {
                        digest: layer.digest,
                        media_type: other.to_owned(),
                    });
                }
            };
            let mut archive = tar::Archive::new(reader);
            for entry in archive.entries().map_err(err)? {
                let entry = entry.map_err(err)?;
                let raw = entry.path().map_err(err)?.to_string_lossy().into_owned();
                let Some(path) = clean(&raw) else { continue };
                index.apply_header(&path, entry.header()).map_err(err)?;
            }
        }
        Ok(index)
    }

    fn apply_header(&mut self, path: &str, header: &tar::Header) -> std::io::Result<()> {
        let (dir, base) = match path.rsplit_once('/') {
            Some((d, b)) => (Some(d), b),
            None => (None, path),
        };
        if base == ".wh..wh..opq" {
            if let Some(dir) = dir.and_then(|d| LayerPath::new(d).ok()) {
                self.remove_children(&dir);
            } else {
                self.entries.clear();
            }
            return Ok(());
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            let target = match dir {
                Some(d) => format!("{d}/{hidden}"),
                None => hidden.to_owned(),
            };
            if let Ok(target) = LayerPath::new(&target) {
                self.remove_children(&target);
                self.entries.remove(&target);
            }
            return Ok(());
        }
        let Ok(path) = LayerPath::new(path) else {
            return Ok(());
        };
        let kind = match header.entry_type() {
            tar::EntryType::Directory => MetaKind::Directory,
            tar::EntryType::Symlink => MetaKind::Symlink(
                header
                    .link_name()?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            _ => MetaKind::Other,
        };
        if kind != MetaKind::Directory {
            // A non-directory replaces whatever was there, including a directory's contents.
            self.remove_children(&path);
        }
        let meta = Meta {
            kind,
            mode: header.mode()? & 0o7777,
            uid: header.uid()?,
            gid: header.gid()?,
            mtime: header.mtime()?,
        };
        self.entries.insert(path, meta);
        Ok(())
    }

    fn remove_children(&mut self, dir: &LayerPath) {
        let children: Vec<LayerPath> = self
            .entries
            .range(dir.clone()..)
            .skip_while(|(p, _)| *p == dir)
            .take_while(|(p, _)| {
                p.as_str().starts_with(dir.as_str())
                    && p.as_str().as_bytes().get(dir.as_str().len()) == Some(&b'/')
            })
            .map(|(p, _)| p.clone())
            .collect();
        for c in children {
            self.entries.remove(&c);
        }
    }

    /// Metadata of a path, if it exists.
    pub fn get(&self, path: &LayerPath) -> Option<&Meta> {
        self.entries.get(path)
    }

    /// Record what a new layer adds (COPY, WORKDIR) so later steps in the stage see it.
    pub fn record(
        &mut self,
        path: &LayerPath,
        kind: &EntryKind,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) {
        let kind = match kind {
            EntryKind::Directory => MetaKind::Directory,
            EntryKind::Symlink { target } => MetaKind::Symlink(target.clone()),
            EntryKind::File { .. } | EntryKind::Hardlink { .. } => MetaKind::Other,
        };
        if kind != MetaKind::Directory {
            self.remove_children(path);
        }
        self.entries.insert(
            path.clone(),
            Meta {
                kind,
                mode,
                uid,
                gid,
                mtime,
            },
        );
    }

    /// Resolve symlinks in the directory part of an image path (e.g. `/bin` → `usr/bin` in
    /// merged-/usr images) so the destination lands where the image really has it. Links are
    /// resolved inside the image root; loops stop after 40 links.
    pub fn resolve_dir(&self, path: &str) -> String {
        let mut resolved: Vec<String> = Vec::new();
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .rev()
            .map(str::to_owned)
            .collect();
        let mut links = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                resolved.pop();
                continue;
            }
            resolved.push(c);
            let Ok(here) = LayerPath::new(&resolved.join("/")) else {
                continue;
            };
            if let Some(Meta {
                kind: MetaKind::Symlink(target),
                ..
            }) = self.entries.get(&here)
                && links < 40
            {
                links += 1;
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                pending.extend(
                    target
                        .split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .rev()
                        .map(str::to_owned),
                );
            }
        }
        resolved.join("/")
    }
}

/// `./a/b/` → `a/b`; `.`/`/` → None.
fn clean(raw: &str) -> Option<String> {
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return None;
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, mode: u32, link: Option<&str>) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h
    }

    fn p(s: &str) -> LayerPath {
        LayerPath::new(s).unwrap()
    }

    #[test]
    fn whiteouts_remove_entries_and_children() {
        let mut idx = FsIndex::default();
        idx.apply_header("a", &header(tar::EntryType::Directory, 0o755, None))
            .unwrap();
        idx.apply_header("a/b", &header(tar::EntryType::Regular, 0o644, None))
            .unwrap();
        idx.apply_header("a/c", &header(tar::EntryType::Directory, 0o700, None))
            .unwrap();
        idx.apply_header("a/c/d", &header(tar::EntryType::Regular, 0o644, None))
            .unwrap();
        idx.apply_header("ab", &header(tar::EntryType::Regular, 0o644, None))
            .unwrap();
        idx.apply_header("a/.wh.c", &header(tar::EntryType::Regular, 0, None))
            .unwrap();
        assert!(idx.get(&p("a/c")).is_none());
        assert!(idx.get(&p("a/c/d")).is_none());
        assert!(idx.get(&p("a/b")).is_some());
        idx.apply_header("a/.wh..wh..opq", &header(tar::EntryType::Regular, 0, None))
            .unwrap();
        assert!(idx.get(&p("a/b")).is_none());
        assert!(idx.get(&p("a")).is_some());
        assert!(
            idx.get(&p("ab")).is_some(),
            "a sibling sharing a prefix survives"
        );
    }

    #[test]
    fn resolves_directory_symlinks() {
        let mut idx = FsIndex::default();
        idx.apply_header("usr", &header(tar::EntryType::Directory, 0o755, None))
            .unwrap();
        idx.apply_header("usr/bin", &header(tar::EntryType::Directory, 0o755, None))
            .unwrap();
        idx.apply_header(
            "bin",
            &header(tar::EntryType::Symlink, 0o777, Some("usr/bin")),
        )
        .unwrap();
        idx.apply_header(
            "abs",
            &header(tar::EntryType::Symlink, 0o777, Some("/usr/../usr/bin")),
        )
        .unwrap();
        idx.apply_header(
            "loop",
            &header(tar::EntryType::Symlink, 0o777, Some("loop")),
        )
        .unwrap();
        assert_eq!(idx.resolve_dir("/bin/x"), "usr/bin/x");
        assert_eq!(idx.resolve_dir("/abs"), "usr/bin");
        assert_eq!(idx.resolve_dir("/nope/x"), "nope/x");
        // A loop stops after 40 links instead of spinning.
        assert_eq!(idx.resolve_dir("/loop/x"), "loop/x");
    }
}
