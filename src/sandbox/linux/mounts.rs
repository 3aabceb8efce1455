//! A spec's mounts turned into mount operations for the new mount API: the filesystem or bind
//! source, the `fsconfig` options, the mount attributes (`MOUNT_ATTR_*`) and propagation, and
//! the destination inside the rootfs as C strings.
//!
//! Pure (apart from reading the host's cgroup v1 layout and `stat`ing bind sources in
//! [`plan_mounts`]), so the option parsing is unit-tested without root. Executing the
//! operations is `rootfs`'s job.

use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use super::super::{Result, SandboxError};

/// A path inside the container, resolved at run time beneath the rootfs
/// (`RESOLVE_IN_ROOT`), with its parent and last component for creating it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InRoot {
    /// Absolute, lexically clean (`/dev/pts`).
    pub path: CString,
    /// The parent directory (`/dev`).
    pub parent: CString,
    /// The last component (`pts`).
    pub leaf: CString,
}

impl InRoot {
    /// `path` (absolute) made lexically clean; `None` for `/` itself or a relative path.
    pub(super) fn new(path: &Path) -> Option<InRoot> {
        if !path.is_absolute() {
            return None;
        }
        let mut clean = PathBuf::from("/");
        for c in path.components() {
            match c {
                Component::Normal(n) => clean.push(n),
                Component::ParentDir => {
                    clean.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        let leaf = clean.file_name()?.as_encoded_bytes().to_vec();
        let parent = clean.parent()?.as_os_str().as_encoded_bytes().to_vec();
        Some(InRoot {
            path: CString::new(clean.into_os_string().into_encoded_bytes()).ok()?,
            parent: CString::new(parent).ok()?,
            leaf: CString::new(leaf).ok()?,
        })
    }

    /// The path, for messages.
    pub(super) fn display(&self) -> std::borrow::Cow<'_, str> {
        self.path.to_string_lossy()
    }

    /// Whether `self` is `other` or beneath it.
    pub(super) fn is_within(&self, other: &InRoot) -> bool {
        self.as_path().starts_with(other.as_path())
    }

    /// The path as a `Path`.
    pub(super) fn as_path(&self) -> &Path {
        use std::os::unix::ffi::OsStrExt as _;
        Path::new(std::ffi::OsStr::from_bytes(self.path.as_bytes()))
    }
}

/// What kind of node a mount needs as its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TargetKind {
    Dir,
    /// A bind mount of a file (or device node) needs a file.
    File,
}

/// A filesystem option passed with `fsconfig`: `FSCONFIG_SET_STRING key value`, or
/// `FSCONFIG_SET_FLAG key` when there is no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FsOption {
    pub key: CString,
    pub value: Option<CString>,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MountSource {
    /// A new filesystem instance (`fsopen(fstype)`).
    Fs {
        fstype: CString,
        /// The `source` shown in `/proc/mounts`.
        source: Option<CString>,
        options: Vec<FsOption>,
    },
    /// A bind mount of a host path (`open_tree(OPEN_TREE_CLONE)`).
    Bind { source: CString, recursive: bool },
    /// cgroup v1 (a host without cgroup2 as its only hierarchy): a tmpfs holding one mount
    /// per host hierarchy, the way runc does it.
    CgroupV1(CgroupV1),
}

/// The host's cgroup v1 hierarchies, as mounted under `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct CgroupV1 {
    /// Options of the tmpfs holding the hierarchies (`mode=755`).
    pub tmpfs_options: Vec<FsOption>,
    pub hierarchies: Vec<Hierarchy>,
    /// `cpu -> cpu,cpuacct` style links: (name, target).
    pub symlinks: Vec<(CString, CString)>,
}

/// One cgroup hierarchy: its directory name under `/sys/fs/cgroup` and how to mount it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hierarchy {
    pub name: CString,
    /// `cgroup` or `cgroup2`.
    pub fstype: CString,
    /// Controllers and other superblock options (`cpu`, `name=systemd`, ...).
    pub options: Vec<FsOption>,
    /// Without a cgroup namespace, a fresh mount would show the host's whole tree: bind this
    /// host directory (the container's own cgroup in the hierarchy) instead, as runc does.
    pub bind_from: Option<CString>,
}

impl Hierarchy {
    /// The `/proc/<pid>/cgroup` controller field of this hierarchy (`cpu,cpuacct`,
    /// `name=systemd`; empty for cgroup2).
    fn controllers(&self) -> String {
        self.options
            .iter()
            .filter(|o| o.value.is_none() || o.key.as_bytes() == b"name")
            .filter(|o| {
                !matches!(
                    o.key.as_bytes(),
                    b"xattr" | b"noprefix" | b"clone_children" | b"cpuset_v2_mode" | b"none"
                )
            })
            .map(|o| match &o.value {
                Some(v) => format!("{}={}", o.key.to_string_lossy(), v.to_string_lossy()),
                None => o.key.to_string_lossy().into_owned(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Entries of `/proc/<pid>/cgroup` text: (controllers, path), e.g. (`cpu,cpuacct`, `/x`),
/// (`""`, `/`) for cgroup2.
pub(super) fn parse_proc_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// The host directory of the cgroup a process of the container is in, in the hierarchy
/// mounted at `mountpoint` with `controllers`: one of `container_dirs` (the container's
/// cgroup) when it is below `mountpoint`, else the caller's own cgroup there (`own`, from
/// [`parse_proc_cgroup`]).
pub(super) fn cgroup_dir(
    mountpoint: &Path,
    controllers: &str,
    container_dirs: &[PathBuf],
    own: &[(String, String)],
) -> PathBuf {
    if let Some(dir) = container_dirs.iter().find(|d| d.starts_with(mountpoint)) {
        return dir.clone();
    }
    let mut want: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
    want.sort_unstable();
    let path = own.iter().find_map(|(c, p)| {
        let mut have: Vec<&str> = c.split(',').filter(|c| !c.is_empty()).collect();
        have.sort_unstable();
        (have == want).then_some(p.as_str())
    });
    let mut dir = mountpoint.to_path_buf();
    for part in path
        .unwrap_or("/")
        .split('/')
        .filter(|p| !p.is_empty() && *p != "..")
    {
        dir.push(part);
    }
    dir
}

impl CgroupV1 {
    /// Switches every hierarchy to a bind mount of the container's cgroup directory (for a
    /// container without a cgroup namespace).
    pub(super) fn bind_container_dirs(
        &mut self,
        container_dirs: &[PathBuf],
        own: &[(String, String)],
    ) {
        for h in &mut self.hierarchies {
            let mountpoint = Path::new("/sys/fs/cgroup").join(h.name.to_string_lossy().as_ref());
            let dir = cgroup_dir(&mountpoint, &h.controllers(), container_dirs, own);
            h.bind_from = CString::new(dir.into_os_string().into_encoded_bytes()).ok();
        }
    }
}

/// Mount attributes (`MOUNT_ATTR_*`) to set and clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Attrs {
    pub set: u64,
    pub clear: u64,
    /// Set on every mount of a recursive bind, not only the top one (`rro`, `rnosuid`, ...).
    pub recursive_set: u64,
}

/// A propagation change after the mount is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Propagation {
    /// `MS_PRIVATE`, `MS_SHARED`, `MS_SLAVE` or `MS_UNBINDABLE`.
    pub flag: u64,
    pub recursive: bool,
}

/// One mount, ready to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MountOp {
    pub target: InRoot,
    pub target_kind: TargetKind,
    pub source: MountSource,
    pub attrs: Attrs,
    pub propagation: Option<Propagation>,
    /// `tmpfs on /dev`, for messages.
    pub label: String,
}

impl MountOp {
    /// Whether the mount makes a fresh filesystem in which missing destinations of later
    /// mounts are created at run time (e.g. `/dev/pts` in the tmpfs on `/dev`), so
    /// [`super::prepare_mountpoints`] must not create them in the rootfs.
    pub(super) fn creates_fresh_tree(&self) -> bool {
        !matches!(self.source, MountSource::Bind { .. })
    }
}

/// The result of parsing a mount's options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct ParsedOptions {
    pub bind: Option<bool>,
    pub attrs: Attrs,
    pub propagation: Option<Propagation>,
    /// Everything else: filesystem options.
    pub data: Vec<FsOption>,
}

const ATIME_MASK: u64 = libc::MOUNT_ATTR__ATIME;

/// Parses OCI mount options (fstab-like words, see runc's `parseMountOptions`).
pub(super) fn parse_options(options: &[String]) -> std::result::Result<ParsedOptions, String> {
    let mut p = ParsedOptions::default();
    for opt in options {
        let (attr_set, attr_clear, recursive): (u64, u64, bool) = match opt.as_str() {
            "bind" => {
                p.bind = Some(false);
                continue;
            }
            "rbind" => {
                p.bind = Some(true);
                continue;
            }
            "ro" => (libc::MOUNT_ATTR_RDONLY, 0, false),
            "rw" => (0, libc::MOUNT_ATTR_RDONLY, false),
            "nosuid" => (libc::MOUNT_ATTR_NOSUID, 0, false),
            "suid" => (0, libc::MOUNT_ATTR_NOSUID, false),
            "nodev" => (libc::MOUNT_ATTR_NODEV, 0, false),
            "dev" => (0, libc::MOUNT_ATTR_NODEV, false),
            "noexec" => (libc::MOUNT_ATTR_NOEXEC, 0, false),
            "exec" => (0, libc::MOUNT_ATTR_NOEXEC, false),
            "nosymfollow" => (libc::MOUNT_ATTR_NOSYMFOLLOW, 0, false),
            "symfollow" => (0, libc::MOUNT_ATTR_NOSYMFOLLOW, false),
            "noatime" => (libc::MOUNT_ATTR_NOATIME, ATIME_MASK, false),
            "strictatime" => (libc::MOUNT_ATTR_STRICTATIME, ATIME_MASK, false),
            "relatime" => (libc::MOUNT_ATTR_RELATIME, ATIME_MASK, false),
            "atime" | "norelatime" | "nostrictatime" => (0, 0, false),
            "nodiratime" => (libc::MOUNT_ATTR_NODIRATIME, 0, false),
            "diratime" => (0, libc::MOUNT_ATTR_NODIRATIME, false),
            "rro" => (libc::MOUNT_ATTR_RDONLY, 0, true),
            "rnosuid" => (libc::MOUNT_ATTR_NOSUID, 0, true),
            "rnodev" => (libc::MOUNT_ATTR_NODEV, 0, true),
            "rnoexec" => (libc::MOUNT_ATTR_NOEXEC, 0, true),
            "rnoatime" => (libc::MOUNT_ATTR_NOATIME, ATIME_MASK, true),
            "rnosymfollow" => (libc::MOUNT_ATTR_NOSYMFOLLOW, 0, true),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let flag = match opt.trim_start_matches('r') {
                    "private" => libc::MS_PRIVATE,
                    "shared" => libc::MS_SHARED,
                    "slave" => libc::MS_SLAVE,
                    _ => libc::MS_UNBINDABLE,
                };
                p.propagation = Some(Propagation {
                    flag,
                    recursive: opt.starts_with('r'),
                });
                continue;
            }
            "idmap" | "ridmap" => {
                return Err(format!("mount option `{opt}` is not supported"));
            }
            "remount" | "loud" | "" => continue,
            _ => {
                let (key, value) = match opt.split_once('=') {
                    Some((k, v)) => (k, Some(v)),
                    None => (opt.as_str(), None),
                };
                let cstr = |s: &str| {
                    CString::new(s).map_err(|_| format!("mount option `{opt}` contains NUL"))
                };
                p.data.push(FsOption {
                    key: cstr(key)?,
                    value: value.map(cstr).transpose()?,
                });
                continue;
            }
        };
        // A later word overrides an earlier one (`ro` then `rw`).
        p.attrs.set = (p.attrs.set & !attr_clear & !attr_set) | attr_set;
        p.attrs.clear = (p.attrs.clear & !attr_set) | attr_clear;
        if recursive {
            p.attrs.recursive_set |= attr_set;
        }
    }
    // An atime mode is a value, not a flag: clearing the mask must not clear the mode chosen.
    if p.attrs.set & ATIME_MASK != 0 || p.attrs.clear & ATIME_MASK != 0 {
        p.attrs.clear |= ATIME_MASK;
        p.attrs.clear &= !(p.attrs.set & !ATIME_MASK);
    }
    Ok(p)
}

/// How mounts of type `cgroup` are made.
#[derive(Debug, Clone, Default)]
pub(super) enum CgroupMount {
    /// A fresh `cgroup2` mount (a cgroup2-only host, with a cgroup namespace).
    #[default]
    Cgroup2,
    /// A bind mount of this cgroup2 directory (a cgroup2-only host, no cgroup namespace).
    Cgroup2Bind(PathBuf),
    /// cgroup v1 hierarchies under a tmpfs.
    V1(CgroupV1),
}

/// Plans `mounts` in order; mounts of type `cgroup` as `cgroup` says.
pub(super) fn plan_mounts(mounts: &[Mount], cgroup: &CgroupMount) -> Result<Vec<MountOp>> {
    mounts.iter().map(|m| plan_mount(m, cgroup)).collect()
}

fn plan_mount(m: &Mount, cgroup: &CgroupMount) -> Result<MountOp> {
    let dest = m.destination();
    let target = InRoot::new(dest).ok_or_else(|| {
        SandboxError::Spec(format!(
            "mount destination `{}` must be an absolute path other than /",
            dest.display()
        ))
    })?;
    let typ = m.typ().as_deref().unwrap_or("");
    let options = m.options().as_deref().unwrap_or_default();
    let parsed = parse_options(options)
        .map_err(|e| SandboxError::Spec(format!("mount on {}: {e}", dest.display())))?;
    let cstring = |what: &str, s: &[u8]| {
        CString::new(s).map_err(|_| {
            SandboxError::Spec(format!("mount on {}: {what} contains NUL", dest.display()))
        })
    };
    let mut parsed = parsed;
    let mut typ = typ;
    let cgroup2_bind;
    if typ == "cgroup"
        && let CgroupMount::Cgroup2Bind(dir) = cgroup
    {
        // runc: bind the container's own cgroup directory, recursively.
        cgroup2_bind = dir.clone();
        parsed.bind = Some(true);
        typ = "bind";
    } else {
        cgroup2_bind = PathBuf::new();
    }
    let source_path = if cgroup2_bind.as_os_str().is_empty() {
        m.source().clone()
    } else {
        Some(cgroup2_bind)
    };
    let bind = parsed.bind.or_else(|| (typ == "bind").then_some(false));
    let (source, target_kind, label) = match bind {
        Some(recursive) => {
            let src = source_path.as_ref().ok_or_else(|| {
                SandboxError::Spec(format!("bind mount on {} has no source", dest.display()))
            })?;
            if !src.is_absolute() {
                return Err(SandboxError::Spec(format!(
                    "bind mount source `{}` must be an absolute path",
                    src.display()
                )));
            }
            let meta = fs_err::metadata(src).map_err(|e| {
                SandboxError::Spec(format!("bind mount source of {}: {e}", dest.display()))
            })?;
            let kind = if meta.is_dir() {
                TargetKind::Dir
            } else {
                TargetKind::File
            };
            let source = MountSource::Bind {
                source: cstring("source", src.as_os_str().as_encoded_bytes())?,
                recursive,
            };
            (
                source,
                kind,
                format!("bind mount of {} on {}", src.display(), dest.display()),
            )
        }
        None => {
            if typ.is_empty() {
                return Err(SandboxError::Spec(format!(
                    "mount on {} has no type",
                    dest.display()
                )));
            }
            let source = match (typ, cgroup) {
                ("cgroup", CgroupMount::V1(v1)) => MountSource::CgroupV1(v1.clone()),
                _ => MountSource::Fs {
                    fstype: cstring(
                        "type",
                        if typ == "cgroup" {
                            b"cgroup2"
                        } else {
                            typ.as_bytes()
                        },
                    )?,
                    source: m
                        .source()
                        .as_ref()
                        .map(|s| cstring("source", s.as_os_str().as_encoded_bytes()))
                        .transpose()?,
                    options: parsed.data.clone(),
                },
            };
            (
                source,
                TargetKind::Dir,
                format!("{typ} on {}", dest.display()),
            )
        }
    };
    Ok(MountOp {
        target,
        target_kind,
        source,
        attrs: parsed.attrs,
        propagation: parsed.propagation,
        label,
    })
}

/// The host's cgroup v1 hierarchies from `/proc/self/mountinfo` text: every `cgroup` (and
/// the hybrid `cgroup2`) mount directly under `/sys/fs/cgroup`. `None` when there is no v1
/// hierarchy (a cgroup2-only host).
pub(super) fn cgroup_v1_layout(mountinfo: &str) -> Option<CgroupV1> {
    let mut layout = CgroupV1 {
        tmpfs_options: vec![FsOption {
            key: c"mode".into(),
            value: Some(c"755".into()),
        }],
        ..CgroupV1::default()
    };
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut l = left.split(' ');
        let Some(mountpoint) = l.nth(4) else { continue };
        let mut r = right.split(' ');
        let (Some(fstype), Some(_source), Some(superopts)) = (r.next(), r.next(), r.next()) else {
            continue;
        };
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let Some(name) = mountpoint.strip_prefix("/sys/fs/cgroup/") else {
            continue;
        };
        if name.is_empty() || name.contains('/') || name.contains('\\') {
            continue;
        }
        let options = if fstype == "cgroup" {
            superopts
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro" | ""))
                .filter_map(|o| {
                    let (k, v) = match o.split_once('=') {
                        Some((k, v)) => (k, Some(v)),
                        None => (o, None),
                    };
                    Some(FsOption {
                        key: CString::new(k).ok()?,
                        value: v.and_then(|v| CString::new(v).ok()),
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let (Ok(name), Ok(fstype)) = (CString::new(name), CString::new(fstype)) else {
            continue;
        };
        if layout.hierarchies.iter().any(|h| h.name == name) {
            continue;
        }
        layout.hierarchies.push(Hierarchy {
            name,
            fstype,
            options,
            bind_from: None,
        });
    }
    layout
        .hierarchies
        .iter()
        .any(|h| h.fstype.as_bytes() == b"cgroup")
        .then_some(layout)
}

/// [`cgroup_v1_layout`] of this host, with the co-mount symlinks found in `/sys/fs/cgroup`
/// (read once per process: hosts do not remount their cgroup hierarchies).
pub(super) fn host_cgroup_v1() -> Option<CgroupV1> {
    static LAYOUT: std::sync::OnceLock<Option<CgroupV1>> = std::sync::OnceLock::new();
    LAYOUT.get_or_init(read_host_cgroup_v1).clone()
}

fn read_host_cgroup_v1() -> Option<CgroupV1> {
    let mountinfo = fs_err::read_to_string("/proc/self/mountinfo").ok()?;
    let mut layout = cgroup_v1_layout(&mountinfo)?;
    if let Ok(dir) = fs_err::read_dir("/sys/fs/cgroup") {
        for entry in dir.flatten() {
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if !is_link {
                continue;
            }
            let Ok(target) = fs_err::read_link(entry.path()) else {
                continue;
            };
            let (Ok(name), Ok(target)) = (
                CString::new(entry.file_name().into_encoded_bytes()),
                CString::new(target.into_os_string().into_encoded_bytes()),
            ) else {
                continue;
            };
            if layout.hierarchies.iter().any(|h| h.name == target) {
                layout.symlinks.push((name, target));
            }
        }
        layout.symlinks.sort();
    }
    Some(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(words: &[&str]) -> ParsedOptions {
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        parse_options(&words).unwrap()
    }

    #[test]
    fn flags_become_mount_attributes_and_the_rest_fs_options() {
        let p = opts(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(
            p.attrs.set,
            libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOEXEC
        );
        assert_eq!(p.attrs.clear, 0);
        assert_eq!(p.bind, None);
        let data: Vec<(String, Option<String>)> = p
            .data
            .iter()
            .map(|o| {
                (
                    o.key.to_string_lossy().into_owned(),
                    o.value.as_ref().map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert_eq!(
            data,
            [
                ("newinstance".to_string(), None),
                ("ptmxmode".to_string(), Some("0666".to_string())),
                ("mode".to_string(), Some("0620".to_string())),
                ("gid".to_string(), Some("5".to_string())),
            ]
        );
    }

    #[test]
    fn later_words_override_earlier_ones() {
        let p = opts(&["ro", "rw"]);
        assert_eq!(p.attrs.set & libc::MOUNT_ATTR_RDONLY, 0);
        assert_eq!(p.attrs.clear, libc::MOUNT_ATTR_RDONLY);
        let p = opts(&["rw", "ro"]);
        assert_eq!(p.attrs.set, libc::MOUNT_ATTR_RDONLY);
        assert_eq!(p.attrs.clear, 0);
    }

    #[test]
    fn atime_modes_are_values() {
        let p = opts(&["strictatime"]);
        assert_eq!(p.attrs.set, libc::MOUNT_ATTR_STRICTATIME);
        assert_eq!(p.attrs.clear, libc::MOUNT_ATTR__ATIME);
        let p = opts(&["noatime", "relatime"]);
        assert_eq!(
            p.attrs.set & libc::MOUNT_ATTR__ATIME,
            libc::MOUNT_ATTR_RELATIME
        );
    }

    #[test]
    fn bind_propagation_and_recursive_flags() {
        let p = opts(&["rbind", "rro", "rprivate"]);
        assert_eq!(p.bind, Some(true));
        assert_eq!(p.attrs.recursive_set, libc::MOUNT_ATTR_RDONLY);
        assert_eq!(
            p.propagation,
            Some(Propagation {
                flag: libc::MS_PRIVATE,
                recursive: true
            })
        );
        let p = opts(&["bind", "slave"]);
        assert_eq!(p.bind, Some(false));
        assert_eq!(
            p.propagation,
            Some(Propagation {
                flag: libc::MS_SLAVE,
                recursive: false
            })
        );
        assert!(parse_options(&["idmap".to_string()]).is_err());
    }

    #[test]
    fn destinations_are_cleaned_and_split() {
        let t = InRoot::new(Path::new("/dev//pts/./")).unwrap();
        assert_eq!(t.path.as_bytes(), b"/dev/pts");
        assert_eq!(t.parent.as_bytes(), b"/dev");
        assert_eq!(t.leaf.as_bytes(), b"pts");
        let t = InRoot::new(Path::new("/../../etc/hosts")).unwrap();
        assert_eq!(t.path.as_bytes(), b"/etc/hosts");
        let t = InRoot::new(Path::new("/proc")).unwrap();
        assert_eq!(t.parent.as_bytes(), b"/");
        assert!(InRoot::new(Path::new("/")).is_none());
        assert!(InRoot::new(Path::new("relative")).is_none());
        let pts = InRoot::new(Path::new("/dev/pts")).unwrap();
        let dev = InRoot::new(Path::new("/dev")).unwrap();
        let devx = InRoot::new(Path::new("/devx")).unwrap();
        assert!(pts.is_within(&dev));
        assert!(!devx.is_within(&dev));
    }

    #[test]
    fn cgroup_v1_hybrid_layout() {
        let info = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /proc rw - proc proc rw
";
        let layout = cgroup_v1_layout(info).unwrap();
        let names: Vec<&[u8]> = layout
            .hierarchies
            .iter()
            .map(|h| h.name.as_bytes())
            .collect();
        assert_eq!(names, [&b"cpu,cpuacct"[..], b"systemd", b"unified"]);
        let cpu: Vec<&[u8]> = layout.hierarchies[0]
            .options
            .iter()
            .map(|o| o.key.as_bytes())
            .collect();
        assert_eq!(cpu, [&b"cpu"[..], b"cpuacct"]);
        let systemd = &layout.hierarchies[1].options[1];
        assert_eq!(systemd.key.as_bytes(), b"name");
        assert_eq!(
            systemd.value.as_deref().map(|v| v.to_bytes()),
            Some(&b"systemd"[..])
        );
        assert_eq!(layout.hierarchies[2].fstype.as_bytes(), b"cgroup2");

        let v2_only = "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup_v1_layout(v2_only), None);
    }

    #[test]
    fn without_a_cgroup_namespace_hierarchies_bind_the_containers_own_directories() {
        let info = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 31 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let mut layout = cgroup_v1_layout(info).unwrap();
        let own = parse_proc_cgroup(
            "4:name=systemd:/user.slice\n3:pids:/\n2:cpuacct,cpu:/kiln\n0::/user.slice\n",
        );
        let container = [
            PathBuf::from("/sys/fs/cgroup/pids/kiln/c1"),
            PathBuf::from("/sys/fs/cgroup/unified/kiln/c1"),
        ];
        layout.bind_container_dirs(&container, &own);
        let binds: Vec<String> = layout
            .hierarchies
            .iter()
            .map(|h| h.bind_from.as_ref().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            binds,
            [
                // Not joined by the container: the caller's own cgroup there.
                "/sys/fs/cgroup/cpu,cpuacct/kiln",
                "/sys/fs/cgroup/pids/kiln/c1",
                "/sys/fs/cgroup/systemd/user.slice",
                "/sys/fs/cgroup/unified/kiln/c1",
            ]
        );
    }
}
