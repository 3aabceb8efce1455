//! Seeding a file step's new snapshot with files of an earlier result of the same step: when a
//! COPY runs again on the same parent because some of its inputs changed, the files whose
//! sources did not change are hard-linked from the earlier snapshot's own layer directory into
//! the new snapshot's upperdir before it is mounted, and the copy skips them. A large COPY with
//! one changed file then creates one inode instead of thousands (on ext4, inode allocation
//! after many deletions dominates such a copy).
//!
//! Safe because both sides are immutable where they share: the earlier snapshot is committed
//! (never written again), a linked file is never written by the step (it is skipped; a file
//! whose content or metadata would differ is not linked), and later steps write through
//! overlay copy-up into their own upperdirs. Directories are not linked: the ones a linked
//! file needs are created in the upperdir with the metadata and extended attributes the
//! earlier result's copy-up gave them (same parent, so the same), and their times are set back
//! to the earlier ones after linking.
//!
//! Overlay driver only (the copy driver has no per-layer directory).
//!
//! Not responsible for: choosing the files (`steps::copy::linkable`), the copy itself.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use snapshotter::layer::LayerPath;

/// Files to take from an earlier result of the step.
#[derive(Debug)]
pub struct Seed {
    /// The earlier snapshot's own layer directory (`LocalSnapshotter::committed_layer_dir`).
    pub dir: PathBuf,
    /// Regular files to link, by path in the layer.
    pub files: Vec<LayerPath>,
    /// The files actually linked (filled by [`link_into`]); the step skips exactly these.
    linked: Mutex<HashSet<LayerPath>>,
}

impl Seed {
    pub fn new(dir: PathBuf, files: Vec<LayerPath>) -> Self {
        Self {
            dir,
            files,
            linked: Mutex::new(HashSet::new()),
        }
    }

    /// Whether `path` was linked (so the step must not write it).
    pub fn is_linked(&self, path: &LayerPath) -> bool {
        self.linked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(path)
    }

    /// How many files were linked.
    pub fn linked_count(&self) -> usize {
        self.linked.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Link the seed's files into `upper` (an unmounted, fresh upperdir). A file that cannot be
/// linked is left for the step to write; an error creating a directory ends seeding early
/// (what was linked stays linked and recorded).
pub fn link_into(seed: &Seed, upper: &Path) {
    let mut linked = seed.linked.lock().unwrap_or_else(|p| p.into_inner());
    let mut made: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut present: HashSet<PathBuf> = HashSet::new();
    for file in &seed.files {
        let rel = Path::new(file.as_str());
        if let Some(parent) = rel.parent()
            && !present.contains(parent)
        {
            if ensure_dirs(&seed.dir, upper, parent, &mut made).is_err() {
                break;
            }
            present.insert(parent.to_owned());
        }
        // A directory cannot be hard-linked: only regular files (and the odd special file the
        // planner never asks for) are.
        if std::fs::hard_link(seed.dir.join(rel), upper.join(rel)).is_ok() {
            linked.insert(file.clone());
        }
    }
    // Linking changed the directories' times: give them back the earlier ones, deepest first.
    for (from, to) in made.iter().rev() {
        if let Ok(meta) = fs_err::symlink_metadata(from) {
            let _ = set_times(to, &meta);
        }
    }
}

/// Create the directories of `rel` that `upper` lacks, as `seed_dir` has them.
fn ensure_dirs(
    seed_dir: &Path,
    upper: &Path,
    rel: &Path,
    made: &mut Vec<(PathBuf, PathBuf)>,
) -> std::io::Result<()> {
    let mut at = PathBuf::new();
    for part in rel.components() {
        at.push(part);
        let to = upper.join(&at);
        if fs_err::symlink_metadata(&to).is_ok() {
            continue;
        }
        let from = seed_dir.join(&at);
        let meta = fs_err::symlink_metadata(&from)?;
        if !meta.is_dir() {
            return Err(std::io::Error::other("not a directory in the seed"));
        }
        fs_err::create_dir(&to)?;
        copy_dir_metadata(&from, &to, &meta)?;
        made.push((from, to));
    }
    Ok(())
}

/// Owner, mode and extended attributes (overlay's own included: an opaque marker must stay)
/// of directory `from` onto `to`.
fn copy_dir_metadata(from: &Path, to: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    use rustix::fs::{Gid, Mode, Uid, XattrFlags};
    rustix::fs::chown(
        to,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
    )?;
    rustix::fs::chmod(to, Mode::from_raw_mode(meta.mode() & 0o7777))?;
    let mut names = vec![0u8; 64 * 1024];
    let n = rustix::fs::llistxattr(from, &mut names)?;
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(from, name, &mut value)?;
        rustix::fs::lsetxattr(to, name, &value[..len], XattrFlags::empty())?;
    }
    Ok(())
}

fn set_times(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    let t = |sec: i64, nsec: i64| rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t(meta.atime(), meta.atime_nsec()),
            last_modification: t(meta.mtime(), meta.mtime_nsec()),
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}
