//! A root filesystem as a comparable value: every entry's type, permission bits, owner, content
//! digest, link target, xattrs and hardlink group (mtimes are left out), and the differences
//! between two of them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::case::Aspect;

/// What the comparison sees of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `-` file, `d` dir, `l` symlink, `c`/`b` device, `p` fifo, `s` socket.
    pub kind: char,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// sha256 and size of a regular file's content.
    pub content: Option<(String, u64)>,
    /// A symlink's target.
    pub link: Option<String>,
    /// A device's number.
    pub rdev: Option<u64>,
    /// Extended attributes, name → hex value.
    pub xattrs: BTreeMap<String, String>,
    /// For a file with several links in the tree: the first path (sorted) of its inode.
    pub hardlink_of: Option<String>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04o} {}:{}",
            self.kind, self.mode, self.uid, self.gid
        )?;
        if let Some((digest, size)) = &self.content {
            write!(f, " {size}B sha256:{}", &digest[..12])?;
        }
        if let Some(link) = &self.link {
            write!(f, " -> {link}")?;
        }
        if let Some(rdev) = self.rdev {
            write!(f, " rdev={rdev}")?;
        }
        if !self.xattrs.is_empty() {
            write!(f, " xattrs={:?}", self.xattrs)?;
        }
        if let Some(first) = &self.hardlink_of {
            write!(f, " hardlink-group={first}")?;
        }
        Ok(())
    }
}

/// Relative path (no leading `/`) → entry, for everything under a root (the root excluded).
pub type Tree = BTreeMap<String, Entry>;

/// Reads the tree under `root`, without following symlinks.
pub fn snapshot(root: &Path) -> Result<Tree, String> {
    let mut tree = Tree::new();
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    walk(root, "", &mut tree, &mut inodes)?;
    for mut paths in inodes.into_values() {
        if paths.len() < 2 {
            continue;
        }
        paths.sort();
        for p in &paths {
            if let Some(e) = tree.get_mut(p) {
                e.hardlink_of = Some(paths[0].clone());
            }
        }
    }
    Ok(tree)
}

fn walk(
    dir: &Path,
    rel: &str,
    tree: &mut Tree,
    inodes: &mut HashMap<(u64, u64), Vec<String>>,
) -> Result<(), String> {
    let entries = fs_err::read_dir(dir).map_err(|e| e.to_string())?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let rel_path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs_err::symlink_metadata(&path).map_err(|e| e.to_string())?;
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            '-'
        } else if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            's'
        };
        let content = if kind == '-' {
            if meta.nlink() > 1 {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(rel_path.clone());
            }
            Some((sha256_file(&path)?, meta.len()))
        } else {
            None
        };
        let link = if kind == 'l' {
            Some(
                fs_err::read_link(&path)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .into_owned(),
            )
        } else {
            None
        };
        tree.insert(
            rel_path.clone(),
            Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                content,
                link,
                rdev: matches!(kind, 'c' | 'b').then(|| meta.rdev()),
                xattrs: xattrs(&path),
                hardlink_of: None,
            },
        );
        if kind == 'd' {
            walk(&path, &rel_path, tree, inodes)?;
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut file = fs_err::File::open(path).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Extended attributes of `path` (not following a symlink); none when the filesystem has none.
fn xattrs(path: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return out;
    };
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut value[..]) {
            out.insert(name.to_owned(), hex::encode(&value[..len]));
        }
    }
    out
}

/// Clears one aspect of every entry at or under `prefix`, so that it takes no part in [`diff`].
pub fn mask(tree: &mut Tree, prefix: &str, aspect: Aspect) {
    for (_, e) in tree.iter_mut().filter(|(p, _)| under(p, prefix)) {
        match aspect {
            Aspect::Hardlink => e.hardlink_of = None,
            Aspect::Owner => (e.uid, e.gid) = (0, 0),
            Aspect::Order => {}
        }
    }
}

/// Whether `path` is `prefix` or lies under it.
pub fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Human-readable differences between `kiln`'s tree and `buildah`'s, skipping `ignored` paths
/// (and what is under them).
pub fn diff(kiln: &Tree, buildah: &Tree, ignored: &[String]) -> Vec<String> {
    let skip = |p: &str| ignored.iter().any(|i| under(p, i));
    let mut out = Vec::new();
    for (path, k) in kiln {
        if skip(path) {
            continue;
        }
        match buildah.get(path) {
            None => out.push(format!("/{path}: only in kiln ({k})")),
            Some(b) if b != k => out.push(format!("/{path}: kiln {k} | buildah {b}")),
            Some(_) => {}
        }
    }
    for (path, b) in buildah {
        if !skip(path) && !kiln.contains_key(path) {
            out.push(format!("/{path}: only in buildah ({b})"));
        }
    }
    out
}

/// Which of `ignored` actually differ between the trees (to report stale accepted differences).
pub fn differing(kiln: &Tree, buildah: &Tree, ignored: &[String]) -> Vec<String> {
    ignored
        .iter()
        .filter(|i| {
            let k: Vec<_> = kiln.iter().filter(|(p, _)| under(p, i)).collect();
            let b: Vec<_> = buildah.iter().filter(|(p, _)| under(p, i)).collect();
            k != b
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: char, mode: u32) -> Entry {
        Entry {
            kind,
            mode,
            uid: 0,
            gid: 0,
            content: None,
            link: None,
            rdev: None,
            xattrs: BTreeMap::new(),
            hardlink_of: None,
        }
    }

    #[test]
    fn diff_reports_missing_changed_and_skips_ignored_subtrees() {
        let mut a = Tree::new();
        let mut b = Tree::new();
        a.insert("x".into(), entry('-', 0o644));
        b.insert("x".into(), entry('-', 0o600));
        a.insert("only-a".into(), entry('d', 0o755));
        b.insert("etc/hosts".into(), entry('-', 0o644));
        b.insert("etc".into(), entry('d', 0o755));
        a.insert("etc".into(), entry('d', 0o755));
        let d = diff(&a, &b, &["etc/hosts".to_owned()]);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("/only-a: only in kiln"), "{d:?}");
        assert!(d[1].starts_with("/x: kiln - 0644"), "{d:?}");
        assert_eq!(differing(&a, &b, &["etc/hosts".to_owned()]), ["etc/hosts"]);
        assert!(differing(&a, &b, &["etc".to_owned()]).len() == 1);
        assert!(under("etc/hosts", "etc") && !under("etcx", "etc"));
    }
}
