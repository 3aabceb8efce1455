//! Filesystem outputs: `type=local` (the final stage's root filesystem written into a directory)
//! and `type=tar` (the same tree as one tar stream), as BuildKit's `exporter/local` and
//! `exporter/tar` produce them.
//!
//! The tree is made by applying the image's layers in order (whiteouts delete) with
//! [`snapshotter::apply`], which never writes outside its target, into a private staging
//! directory. For `local` the staging directory is created next to the destination (same
//! filesystem) and its entries are then moved into the destination, merging into what is there
//! as BuildKit's local exporter does (`fsutil.Receive` with merge: files the image has replace
//! those of the same name, others are left alone). Nothing in the destination is followed: an
//! existing symlink where the image has a directory is replaced, not written through.
//!
//! The tar lists entries sorted by path with numeric owners, modes and mtimes of the tree, and
//! hard links as such; xattrs are not carried (BuildKit's tar exporter does not either).
//!
//! Not responsible for: image archives (`archive`), choosing the staging parent of a tar (the
//! caller passes a directory under the store).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use snapshotter::apply::{ApplyExpect, ApplyOptions, Durability, WhiteoutMode, apply};

use crate::store::{Store, StoredImage};

use super::OutputError;

/// Apply every layer of `image` into `target`, which must not exist yet.
fn unpack(store: &Store, image: &StoredImage, target: &Path) -> Result<(), OutputError> {
    let mut opts = ApplyOptions::new(WhiteoutMode::Delete);
    opts.durability = Durability::NoSync;
    if image.manifest.layers.is_empty() {
        fs_err::create_dir(target)?;
        return Ok(());
    }
    for layer in &image.manifest.layers {
        let blob = store.content().open_blob(&layer.digest)?;
        let expect = ApplyExpect {
            digest: Some(snapshotter::BlobDigest(layer.digest)),
            diff_id: None,
        };
        apply(blob, target, expect, &opts).map_err(|e| OutputError::Unpack {
            digest: layer.digest,
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// `type=local`: write the image's root filesystem into `dest` (created when missing).
pub fn write_local(store: &Store, image: &StoredImage, dest: &Path) -> Result<(), OutputError> {
    // A symlink to a directory is a directory the user named: it is followed.
    if dest.exists() && !dest.is_dir() {
        return Err(OutputError::DestNotADirectory {
            path: dest.to_path_buf(),
        });
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs_err::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".kiln-output-")
        .tempdir_in(&parent)
        .map_err(|e| OutputError::Io {
            path: parent.clone(),
            source: e,
        })?;
    let tree = staging.path().join("rootfs");
    unpack(store, image, &tree)?;
    if !dest.exists() {
        fs_err::rename(&tree, dest)?;
        return Ok(());
    }
    merge_into(&tree, dest)?;
    Ok(())
}

/// Move every entry of `from` into `into`; directories present on both sides are merged, any
/// other existing entry (a file, a symlink, a directory where `from` has a file) is replaced.
fn merge_into(from: &Path, into: &Path) -> Result<(), OutputError> {
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = into.join(entry.file_name());
        let src_is_dir = entry.file_type()?.is_dir();
        match fs_err::symlink_metadata(&dst) {
            Ok(m) if m.is_dir() && src_is_dir => {
                merge_into(&src, &dst)?;
                let meta = fs_err::symlink_metadata(&src)?;
                fs_err::set_permissions(&dst, meta.permissions())?;
                continue;
            }
            Ok(m) if m.is_dir() => fs_err::remove_dir_all(&dst)?,
            Ok(_) => fs_err::remove_file(&dst)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        fs_err::rename(&src, &dst)?;
    }
    Ok(())
}

/// `type=tar`: the image's root filesystem as a tar on `out`, staged under `scratch_parent`.
pub fn write_tar(
    store: &Store,
    image: &StoredImage,
    scratch_parent: &Path,
    out: impl Write,
) -> Result<(), OutputError> {
    fs_err::create_dir_all(scratch_parent)?;
    let staging = tempfile::Builder::new()
        .prefix("output-")
        .tempdir_in(scratch_parent)
        .map_err(|e| OutputError::Io {
            path: scratch_parent.to_path_buf(),
            source: e,
        })?;
    let tree = staging.path().join("rootfs");
    unpack(store, image, &tree)?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut links = HashMap::new();
    append_tree(&mut tar, &tree, "", &mut links)?;
    tar.into_inner()?.flush()?;
    Ok(())
}

/// Append the children of `dir` (named `prefix/<name>` in the tar), sorted by name.
fn append_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &str,
    links: &mut HashMap<(u64, u64), String>,
) -> Result<(), OutputError> {
    let mut entries = fs_err::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(OutputError::NonUtf8Path { path: entry.path() });
        };
        let rel = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        let meta = fs_err::symlink_metadata(&path)?;
        let ft = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                tar.append_link(&mut header, &rel, first)?;
                continue;
            }
            links.insert(key, rel.clone());
        }
        if ft.is_dir() {
            header.set_size(0);
            tar.append_data(&mut header, format!("{rel}/"), std::io::empty())?;
            append_tree(tar, &path, &rel, links)?;
        } else if ft.is_file() {
            let f = fs_err::File::open(&path)?;
            tar.append_data(&mut header, &rel, f)?;
        } else if ft.is_symlink() {
            let target = fs_err::read_link(&path)?;
            header.set_size(0);
            tar.append_link(&mut header, &rel, target)?;
        } else if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() {
            header.set_size(0);
            tar.append_data(&mut header, &rel, std::io::empty())?;
        }
        // Sockets cannot be archived; layers never hold them.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_replaces_files_and_symlinks_and_keeps_others() {
        let from = tempfile::tempdir().unwrap();
        let into = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(from.path().join("etc")).unwrap();
        fs_err::write(from.path().join("etc/passwd"), "image").unwrap();
        fs_err::write(from.path().join("file"), "new").unwrap();
        fs_err::create_dir_all(from.path().join("dir/sub")).unwrap();
        fs_err::write(from.path().join("dir/sub/x"), "x").unwrap();

        // `etc` in the destination is a symlink out of it: it must be replaced, not followed.
        std::os::unix::fs::symlink(outside.path(), into.path().join("etc")).unwrap();
        fs_err::write(into.path().join("file"), "old").unwrap();
        fs_err::create_dir_all(into.path().join("dir")).unwrap();
        fs_err::write(into.path().join("dir/keep"), "kept").unwrap();

        merge_into(from.path(), into.path()).unwrap();
        assert_eq!(
            fs_err::read_to_string(into.path().join("etc/passwd")).unwrap(),
            "image"
        );
        assert!(!outside.path().join("passwd").exists());
        assert_eq!(
            fs_err::read_to_string(into.path().join("file")).unwrap(),
            "new"
        );
        assert_eq!(
            fs_err::read_to_string(into.path().join("dir/keep")).unwrap(),
            "kept"
        );
        assert_eq!(
            fs_err::read_to_string(into.path().join("dir/sub/x")).unwrap(),
            "x"
        );
    }
}
