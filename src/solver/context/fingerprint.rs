//! The fingerprint of what literal COPY sources select in a context: a SHA-256 over everything
//! the selection depends on in the tree, taken with one `getdents64` per directory and one
//! `statx` per entry and nothing else (no paths built, no file read), so that an unchanged
//! selection is recognised at the cost of looking at its entries once.
//!
//! It covers the context root, the ignore file's text, each source as written with the path it
//! resolves to (symlinks followed as [`Context::resolve`] does) and whether the ignore file
//! lets it in, then every entry [`Context::walk`] would list below it (and the excluded
//! directories it enters for exceptions): its name and `statx` identity (type and mode, owner,
//! link count, device, inode, size, mtime and ctime in nanoseconds). A change of content moves
//! the mtime or (`touch -d`, `cp -p`) the ctime; a new symlink target is a new inode; a rename,
//! an added or a removed entry changes the names. Entries the ignore file leaves out are not
//! looked at, as [`Context::walk`] does not list them. The entries are hashed in directory
//! order: an unchanged directory lists them in the same order.
//!
//! A fingerprint is only as good as the identities are recent: it also gives the newest mtime
//! or ctime it saw, for the racy rule of the stat cache (`cache::stat`).
//!
//! Not responsible for: deciding which selections may be fingerprinted or storing what a
//! fingerprint stands for (`solver::steps::copy::summary`).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, RawDir, Statx, StatxFlags};
use sha2::{Digest as _, Sha256};
use snapshotter::Digest;

use super::{Context, ContextError, Presence};

/// Bumped whenever what is hashed changes.
const VERSION: &[u8] = b"kiln-context-fingerprint-v1\0";

/// What [`Context::fingerprint`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub digest: Digest,
    /// The newest mtime or ctime of everything covered (ns since the epoch).
    pub newest_ns: i128,
    /// Entries looked at (sources and what is below them).
    pub entries: usize,
}

/// A directory's part: its digest, newest time and entry count.
struct Part {
    digest: [u8; 32],
    newest_ns: i128,
    entries: usize,
}

/// The `statx` fields a fingerprint needs.
const NEEDED: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::NLINK)
    .union(StatxFlags::UID)
    .union(StatxFlags::GID)
    .union(StatxFlags::MTIME)
    .union(StatxFlags::CTIME)
    .union(StatxFlags::INO)
    .union(StatxFlags::SIZE);

fn stat_at(dir: BorrowedFd<'_>, name: &std::ffi::CStr, flags: AtFlags) -> std::io::Result<Statx> {
    let st = rustix::fs::statx(dir, name, flags | AtFlags::SYMLINK_NOFOLLOW, NEEDED)?;
    if !StatxFlags::from_bits_retain(st.stx_mask).contains(NEEDED) {
        return Err(std::io::Error::other(
            "the filesystem does not give every field a fingerprint needs",
        ));
    }
    Ok(st)
}

fn ns(t: &rustix::fs::StatxTimestamp) -> i128 {
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

fn newest(st: &Statx) -> i128 {
    ns(&st.stx_mtime).max(ns(&st.stx_ctime))
}

fn is_dir(st: &Statx) -> bool {
    FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::Directory
}

/// The identity fields of `st`, as hashed.
fn identity(st: &Statx) -> [u8; 64] {
    let mut out = [0u8; 64];
    let fields: [&[u8]; 12] = [
        &u32::from(st.stx_mode).to_le_bytes(),
        &st.stx_uid.to_le_bytes(),
        &st.stx_gid.to_le_bytes(),
        &st.stx_nlink.to_le_bytes(),
        &st.stx_dev_major.to_le_bytes(),
        &st.stx_dev_minor.to_le_bytes(),
        &st.stx_ino.to_le_bytes(),
        &st.stx_size.to_le_bytes(),
        &st.stx_mtime.tv_sec.to_le_bytes(),
        &st.stx_mtime.tv_nsec.to_le_bytes(),
        &st.stx_ctime.tv_sec.to_le_bytes(),
        &st.stx_ctime.tv_nsec.to_le_bytes(),
    ];
    let mut at = 0;
    for f in fields {
        out[at..at + f.len()].copy_from_slice(f);
        at += f.len();
    }
    debug_assert_eq!(at, out.len());
    out
}

/// Whether `a` and `b` are the same inode, unchanged.
fn same_inode(a: &Statx, b: &Statx) -> bool {
    identity(a) == identity(b)
}

impl Context {
    /// The fingerprint of what the literal (wildcard-free) sources `sources` select in this
    /// context, in that order (see the module documentation). Any error (a source that does
    /// not resolve, an unreadable directory, a directory replaced while it was looked at)
    /// means no fingerprint: the caller plans the selection, which reports what is wrong.
    pub fn fingerprint(&self, sources: &[&str]) -> Result<Fingerprint, ContextError> {
        let mut h = Sha256::new();
        h.update(VERSION);
        let root = self.root.as_os_str().as_encoded_bytes();
        h.update((root.len() as u64).to_le_bytes());
        h.update(root);
        match &self.ignore {
            Some(ignore) => {
                h.update([1]);
                h.update((ignore.text.len() as u64).to_le_bytes());
                h.update(ignore.text.as_bytes());
            }
            None => h.update([0]),
        }
        let mut newest_ns = i128::MIN;
        let mut entries = 0;
        for source in sources {
            h.update((source.len() as u64).to_le_bytes());
            h.update(source.as_bytes());
            let resolved = self.resolve(source)?;
            h.update((resolved.rel.len() as u64).to_le_bytes());
            h.update(resolved.rel.as_bytes());
            match &resolved.presence {
                Presence::Included => h.update([0]),
                Presence::ThroughExceptions(e) => {
                    h.update([1]);
                    h.update(e.line.to_le_bytes());
                    h.update(e.pattern.as_bytes());
                }
            }
            let host = resolved.host.as_path();
            let st = stat_at(CWD, &path_cstr(host)?, AtFlags::empty())?;
            h.update(identity(&st));
            newest_ns = newest_ns.max(newest(&st));
            entries += 1;
            if is_dir(&st) {
                let fd = rustix::fs::open(
                    host,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(std::io::Error::from)?;
                if !same_inode(&st, &stat_at(fd.as_fd(), c"", AtFlags::EMPTY_PATH)?) {
                    return Err(replaced(host));
                }
                let part = self.directory(fd, &resolved.rel)?;
                h.update(part.digest);
                newest_ns = newest_ns.max(part.newest_ns);
                entries += part.entries;
            }
        }
        Ok(Fingerprint {
            digest: Digest::from_bytes(h.finalize().into()),
            newest_ns,
            entries,
        })
    }

    /// The part of the open directory `fd` (at `rel` in the context): its entries in
    /// directory order, then the parts of its subdirectories, looked at in parallel.
    fn directory(&self, fd: OwnedFd, rel: &str) -> Result<Part, ContextError> {
        let rules = self.ignore.as_ref().map(|i| &i.rules);
        let mut h = Sha256::new();
        let mut newest_ns = i128::MIN;
        let mut entries = 0;
        // (name, path in the context when there are rules, identity)
        let mut subdirs: Vec<(std::ffi::CString, String, Statx)> = Vec::new();
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 32 * 1024];
        let mut dir = RawDir::new(fd.as_fd(), &mut buf);
        let mut entry_rel = String::new();
        while let Some(entry) = dir.next() {
            let entry = entry.map_err(std::io::Error::from)?;
            let name = entry.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let mut excluded = false;
            if let Some(rules) = rules {
                entry_rel.clear();
                if !rel.is_empty() {
                    entry_rel.push_str(rel);
                    entry_rel.push('/');
                }
                entry_rel.push_str(&String::from_utf8_lossy(bytes));
                excluded = rules.is_excluded(&entry_rel);
                if excluded {
                    let dir_entry = match entry.file_type() {
                        FileType::Directory => true,
                        FileType::Unknown => is_dir(&stat_at(fd.as_fd(), name, AtFlags::empty())?),
                        _ => false,
                    };
                    if !(dir_entry && rules.may_have_exceptions_under(&entry_rel)) {
                        continue;
                    }
                }
            }
            let st = stat_at(fd.as_fd(), name, AtFlags::empty())?;
            h.update((bytes.len() as u32).to_le_bytes());
            h.update(bytes);
            h.update([u8::from(excluded)]);
            h.update(identity(&st));
            newest_ns = newest_ns.max(newest(&st));
            entries += 1;
            if is_dir(&st) {
                subdirs.push((name.to_owned(), entry_rel.clone(), st));
            }
        }
        let sub = |(name, sub_rel, st): &(std::ffi::CString, String, Statx)| {
            let child = rustix::fs::openat(
                fd.as_fd(),
                name.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(std::io::Error::from)?;
            if !same_inode(st, &stat_at(child.as_fd(), c"", AtFlags::EMPTY_PATH)?) {
                return Err(replaced(std::path::Path::new(sub_rel)));
            }
            self.directory(child, sub_rel)
        };
        let parts: Vec<Part> = if subdirs.len() > 1 {
            subdirs.par_iter().map(sub).collect::<Result<_, _>>()?
        } else {
            subdirs.iter().map(sub).collect::<Result<_, _>>()?
        };
        for part in parts {
            h.update(part.digest);
            newest_ns = newest_ns.max(part.newest_ns);
            entries += part.entries;
        }
        Ok(Part {
            digest: h.finalize().into(),
            newest_ns,
            entries,
        })
    }
}

fn path_cstr(path: &std::path::Path) -> Result<std::ffi::CString, ContextError> {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| ContextError::Io(std::io::Error::other(e)))
}

fn replaced(path: &std::path::Path) -> ContextError {
    ContextError::Io(std::io::Error::other(format!(
        "{} was replaced while it was looked at",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// A context with `files` (a content of `->x` makes a symlink to `x`).
    fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
        crate::solver::context::tests::test_tree(files)
    }

    fn fp(dir: &Path, sources: &[&str]) -> Fingerprint {
        Context::open(dir)
            .unwrap()
            .apply_dockerignore(None)
            .unwrap()
            .fingerprint(sources)
            .unwrap()
    }

    const FILES: &[(&str, &str)] = &[
        ("src/a.txt", "alpha"),
        ("src/sub/b.txt", "beta"),
        ("src/sub/deeper/c.txt", "gamma"),
        ("src/other/d.txt", "delta"),
        ("src/link", "->a.txt"),
        ("top.txt", "top"),
    ];

    fn run(cmd: &str, args: &[&str], dir: &Path) {
        let ok = std::process::Command::new(cmd)
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{cmd} {args:?}");
    }

    /// Every kind of change to what `COPY src/` selects changes the fingerprint; looking again
    /// at an unchanged context does not.
    #[test]
    #[allow(clippy::print_stderr)]
    fn every_change_of_the_selection_changes_the_fingerprint() {
        type Change = fn(&Path);
        let changes: &[(&str, Change)] = &[
            ("content, same size", |d| {
                fs_err::write(d.join("src/sub/b.txt"), "BETA").unwrap()
            }),
            ("content, mtime put back", |d| {
                let f = d.join("src/sub/deeper/c.txt");
                let before = fs_err::metadata(&f).unwrap().modified().unwrap();
                fs_err::write(&f, "GAMMA").unwrap();
                fs_err::File::options()
                    .write(true)
                    .open(&f)
                    .unwrap()
                    .set_modified(before)
                    .unwrap();
            }),
            ("mode", |d| run("chmod", &["0600", "src/a.txt"], d)),
            ("owner", |d| run("chown", &["1234:1234", "src/a.txt"], d)),
            ("rename", |d| {
                fs_err::rename(d.join("src/other/d.txt"), d.join("src/other/e.txt")).unwrap()
            }),
            ("added file", |d| {
                fs_err::write(d.join("src/sub/deeper/new.txt"), "").unwrap()
            }),
            ("removed file", |d| {
                fs_err::remove_file(d.join("src/other/d.txt")).unwrap()
            }),
            ("symlink target", |d| {
                fs_err::remove_file(d.join("src/link")).unwrap();
                symlink("sub/b.txt", d.join("src/link")).unwrap();
            }),
            ("empty directory added", |d| {
                fs_err::create_dir(d.join("src/empty")).unwrap()
            }),
        ];
        for (what, change) in changes {
            if *what == "owner" && !rustix::process::geteuid().is_root() {
                eprintln!("skipped the owner change: chown needs root");
                continue;
            }
            let d = context(FILES);
            let before = fp(d.path(), &["src"]);
            assert_eq!(before, fp(d.path(), &["src"]), "{what}: unchanged");
            assert_eq!(before.entries, 1 + 8, "{what}");
            // Past the filesystem's timestamp granularity (a change within it is what the
            // racy rule is for).
            std::thread::sleep(std::time::Duration::from_millis(20));
            change(d.path());
            assert_ne!(
                before.digest,
                fp(d.path(), &["src"]).digest,
                "{what} was not seen"
            );
        }
    }

    #[test]
    fn what_the_selection_does_not_cover_does_not_change_it() {
        let d = context(FILES);
        let before = fp(d.path(), &["src/sub"]);
        fs_err::write(d.path().join("top.txt"), "TOP!").unwrap();
        fs_err::write(d.path().join("src/other/d.txt"), "DELTA").unwrap();
        assert_eq!(before, fp(d.path(), &["src/sub"]));
        // Another source list is another fingerprint.
        assert_ne!(before.digest, fp(d.path(), &["src/sub", "top.txt"]).digest);
        assert_ne!(before.digest, fp(d.path(), &["./src/sub"]).digest);
    }

    #[test]
    fn ignored_entries_are_not_looked_at_and_the_ignore_file_counts() {
        let d = context(&[
            (".dockerignore", "**/*.log\nsrc/cache\n!src/cache/keep\n"),
            ("src/a.txt", "a"),
            ("src/debug.log", "1"),
            ("src/cache/junk", "j"),
            ("src/cache/keep", "k"),
        ]);
        let before = fp(d.path(), &["src"]);
        // a.txt, cache (entered for its exception), keep: the log and the junk are left out.
        assert_eq!(before.entries, 1 + 3);
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs_err::write(d.path().join("src/debug.log"), "22").unwrap();
        fs_err::remove_file(d.path().join("src/cache/junk")).unwrap();
        // Removing junk changes the directory `cache` (its mtime), which is covered.
        let after = fp(d.path(), &["src"]);
        assert_ne!(before.digest, after.digest);
        fs_err::write(d.path().join("src/debug.log"), "333").unwrap();
        assert_eq!(after, fp(d.path(), &["src"]));
        fs_err::write(d.path().join(".dockerignore"), "**/*.log\n").unwrap();
        assert_ne!(after.digest, fp(d.path(), &["src"]).digest);
    }

    #[test]
    fn a_source_through_a_symlink_covers_where_it_leads() {
        let d = context(&[("one/f", "1"), ("two/f", "2"), ("pick", "->one")]);
        let before = fp(d.path(), &["pick"]);
        fs_err::remove_file(d.path().join("pick")).unwrap();
        symlink("two", d.path().join("pick")).unwrap();
        assert_ne!(before.digest, fp(d.path(), &["pick"]).digest);
        // A missing source has no fingerprint.
        let c = Context::open(d.path()).unwrap();
        assert!(c.fingerprint(&["missing"]).is_err());
    }

    #[test]
    fn the_newest_time_is_the_newest_change() {
        let d = context(FILES);
        let f = fp(d.path(), &["src"]);
        let now = crate::cache::stat::now_ns();
        assert!(f.newest_ns <= now && f.newest_ns > now - 60_000_000_000);
    }
}
