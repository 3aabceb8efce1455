//! The host's cgroup hierarchies (from `/proc/self/mountinfo`) and the caller's own cgroup in
//! each (from `/proc/self/cgroup`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::Layout;
use super::files::{REAL_FS, read_to_string};

/// Which cgroup version a hierarchy (and the directories in it) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Version {
    /// A v1 hierarchy and its controllers (`name=systemd` for a named one).
    V1(Vec<String>),
    V2,
}

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hierarchy {
    pub(super) mountpoint: PathBuf,
    /// The cgroup shown at the mount point (`/` unless a sub-tree is bind-mounted).
    pub(super) root: String,
    pub(super) version: Version,
}

#[derive(Debug)]
pub(super) struct Host {
    pub(super) layout: Layout,
    /// On a unified host, only the cgroup2 mount.
    pub(super) hierarchies: Vec<Hierarchy>,
}

pub(super) fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let unified = rustix::fs::statfs("/sys/fs/cgroup")
            .is_ok_and(|s| s.f_type == libc::CGROUP2_SUPER_MAGIC);
        let mountinfo =
            read_to_string(&REAL_FS, Path::new("/proc/self/mountinfo")).unwrap_or_default();
        host_from(unified, parse_mountinfo(&mountinfo))
    })
}

pub(super) fn host_from(unified: bool, mut hierarchies: Vec<Hierarchy>) -> Host {
    let has_v1 = hierarchies
        .iter()
        .any(|h| matches!(h.version, Version::V1(_)));
    let has_v2 = hierarchies.iter().any(|h| h.version == Version::V2);
    let layout = match (unified, has_v1, has_v2) {
        (true, _, _) | (false, false, true) => Layout::Unified,
        (false, true, true) => Layout::Hybrid,
        (false, true, false) => Layout::V1,
        (false, false, false) => Layout::None,
    };
    if layout == Layout::Unified {
        hierarchies.retain(|h| h.version == Version::V2);
    }
    Host {
        layout,
        hierarchies,
    }
}

/// The cgroup mounts in `/proc/self/mountinfo` text, one per hierarchy (the first mount wins).
pub(super) fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    const V1_CONTROLLERS: [&str; 15] = [
        "cpuset",
        "cpu",
        "cpuacct",
        "blkio",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "perf_event",
        "net_prio",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
        "debug",
    ];
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in text.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mountpoint), Some(fstype)) =
            (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        let version = match *fstype {
            "cgroup2" => Version::V2,
            "cgroup" => {
                let options = right.get(2).copied().unwrap_or_default();
                let controllers: Vec<String> = options
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                    .map(str::to_string)
                    .collect();
                if controllers.is_empty() {
                    continue;
                }
                Version::V1(controllers)
            }
            _ => continue,
        };
        if found.iter().any(|h| h.version == version) {
            continue;
        }
        found.push(Hierarchy {
            mountpoint: PathBuf::from(unescape_mountinfo(mountpoint)),
            root: unescape_mountinfo(root),
            version,
        });
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub(super) fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/self/cgroup`: the caller's cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OwnCgroup {
    /// The v1 hierarchy's controllers; `None` for cgroup2 (`0::/path`).
    pub(super) controllers: Option<Vec<String>>,
    pub(super) path: String,
}

pub(super) fn parse_proc_cgroup(text: &str) -> Vec<OwnCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?.to_string();
            let controllers = if id == "0" && controllers.is_empty() {
                None
            } else {
                Some(controllers.split(',').map(str::to_string).collect())
            };
            Some(OwnCgroup { controllers, path })
        })
        .collect()
}

/// The caller's own cgroup directory in `hierarchy` (its mount point when unknown).
pub(super) fn own_dir(hierarchy: &Hierarchy, own: &[OwnCgroup]) -> PathBuf {
    let found = own
        .iter()
        .find(|o| match (&hierarchy.version, &o.controllers) {
            (Version::V2, None) => true,
            (Version::V1(mounted), Some(listed)) => listed.iter().any(|c| mounted.contains(c)),
            _ => false,
        });
    let Some(own) = found else {
        return hierarchy.mountpoint.clone();
    };
    // The mount may show a sub-tree only (inside a container): strip its root.
    let inner = match own.path.strip_prefix(hierarchy.root.as_str()) {
        Some(rest) if hierarchy.root != "/" => rest,
        _ => own.path.as_str(),
    };
    let inner = inner.trim_start_matches('/');
    if inner.is_empty() {
        hierarchy.mountpoint.clone()
    } else {
        hierarchy.mountpoint.join(inner)
    }
}
