//! The container's user namespace: a spec's `user` namespace and `uidMappings`/`gidMappings`
//! checked and turned into the text of `/proc/<pid>/uid_map` and `gid_map`, written by the
//! parent for the new init before it lets the init go on.
//!
//! Who may write which map (user_namespaces(7)) decides how they are written:
//!
//! - a privileged caller (effective uid 0, `CAP_SETUID`/`CAP_SETGID` in its namespace) writes
//!   any maps itself, and leaves `setgroups` at `allow`;
//! - an unprivileged caller that maps one id onto its own effective uid (and one onto its
//!   effective gid) writes them itself, after writing `deny` to `setgroups` as the kernel
//!   demands (runc and crun do the same); the container then cannot call `setgroups`;
//! - an unprivileged caller with anything else needs the setuid helpers `newuidmap` and
//!   `newgidmap` (Debian's `uidmap` package), which check the ranges against `/etc/subuid` and
//!   `/etc/subgid` and decide `setgroups` themselves; without them the start fails with an
//!   error that says so.
//!
//! Inside a user namespace the container's capabilities are relative to it: root in the
//! container may mount a tmpfs or set the hostname of namespaces the user namespace owns, but
//! not write host files owned by ids outside the maps (they show as the overflow id 65534), load
//! modules, or `mknod` devices. What the runtime does differently there (devices bound from the
//! host, `/sys` and cgroup mounts as read-only binds without a new network namespace or for
//! the cgroup hierarchies, `uid=`/`gid=` mount options with unmapped ids dropped) is planned in
//! `plan.rs` from [`UserNsPlan::maps_gid`] and [`UserNsPlan::maps_uid`].
//!
//! # Rootfs ownership
//!
//! The kernel maps ids, it does not shift files: a rootfs used in a user namespace must be owned
//! by the ids that container root maps to (host uid 100000 for a `0 100000 65536` map; the
//! caller's own uid when it maps 0 onto itself), or root in the container sees its own files as
//! owned by nobody. The solver does not do that yet; for rootless builds it must either unpack
//! layers with every uid/gid shifted by the map (what rootless BuildKit and Podman's
//! containers/storage do: `chown` while applying, the snapshot keyed by the map, and shifted
//! back when a layer is diffed), or keep layers unshifted and mount the snapshot with an
//! idmapped mount (`mount_setattr(MOUNT_ATTR_IDMAP)` with the container's user namespace, Linux
//! 5.12+, on overlayfs from 5.19; only a privileged caller can create one).
//!
//! Not responsible for: the clone (`mod.rs`), what the init does once the maps are in place
//! (`init.rs`), choosing the maps (the caller, e.g. `sandbox::spec`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::LinuxIdMapping;

use super::super::{Result, SandboxError};
use super::mounts::{MountOp, MountSource};
use super::plan::Join;

/// The kernel's limit on lines in one map (Linux 4.15+).
const MAX_RANGES: usize = 340;

/// One line of a map: `size` ids from `inside` (in the container) onto `outside` (in the
/// caller's user namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub size: u32,
}

/// What to write to `/proc/<pid>/setgroups` before the gid map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Setgroups {
    Allow,
    Deny,
    /// `newgidmap` decides (it writes `deny` unless `/etc/subgid` grants the ranges).
    Helper,
}

/// How the maps get written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Writer {
    /// By the caller, to `/proc/<pid>/{setgroups,uid_map,gid_map}`.
    Direct,
    /// By the setuid helpers `newuidmap` and `newgidmap` at these paths.
    Helpers {
        newuidmap: PathBuf,
        newgidmap: PathBuf,
    },
}

/// A new user namespace, planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UserNsPlan {
    pub uid_map: Vec<IdRange>,
    pub gid_map: Vec<IdRange>,
    pub setgroups: Setgroups,
    pub writer: Writer,
}

/// The caller's identity, as far as writing maps goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Caller {
    pub euid: u32,
    pub egid: u32,
}

impl Caller {
    /// The calling process.
    pub(super) fn current() -> Caller {
        Caller {
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
        }
    }

    fn privileged(self) -> bool {
        self.euid == 0
    }
}

fn spec_err(msg: impl Into<String>) -> SandboxError {
    SandboxError::Spec(msg.into())
}

fn ranges(what: &str, mappings: &[LinuxIdMapping]) -> Result<Vec<IdRange>> {
    if mappings.is_empty() {
        return Err(spec_err(format!(
            "a new user namespace needs linux.{what} (no id would be mapped)"
        )));
    }
    if mappings.len() > MAX_RANGES {
        return Err(spec_err(format!(
            "linux.{what} has {} entries; the kernel takes at most {MAX_RANGES}",
            mappings.len()
        )));
    }
    let out: Vec<IdRange> = mappings
        .iter()
        .map(|m| IdRange {
            inside: m.container_id(),
            outside: m.host_id(),
            size: m.size(),
        })
        .collect();
    for (i, r) in out.iter().enumerate() {
        let end = |start: u32| u64::from(start) + u64::from(r.size);
        if r.size == 0 || end(r.inside) > 1 << 32 || end(r.outside) > 1 << 32 {
            return Err(spec_err(format!(
                "linux.{what}: {} {} {} is empty or runs past 2^32",
                r.inside, r.outside, r.size
            )));
        }
        let overlaps = |a: u32, b: u32, bsize: u32| {
            u64::from(a) < u64::from(b) + u64::from(bsize)
                && u64::from(b) < u64::from(a) + u64::from(r.size)
        };
        if let Some(o) = out.get(..i).unwrap_or_default().iter().find(|o| {
            overlaps(r.inside, o.inside, o.size) || overlaps(r.outside, o.outside, o.size)
        }) {
            return Err(spec_err(format!(
                "linux.{what}: {} {} {} overlaps {} {} {}",
                r.inside, r.outside, r.size, o.inside, o.outside, o.size
            )));
        }
    }
    Ok(out)
}

fn maps(ranges: &[IdRange], id: u32) -> bool {
    ranges
        .iter()
        .any(|r| id >= r.inside && u64::from(id) < u64::from(r.inside) + u64::from(r.size))
}

/// The map's text, as the kernel wants it in one `write`.
fn map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.size))
        .collect()
}

impl UserNsPlan {
    /// Checks the maps and decides how `caller` writes them; `find` looks a helper up in
    /// `PATH` (a parameter for tests).
    pub(super) fn new(
        uid_mappings: &[LinuxIdMapping],
        gid_mappings: &[LinuxIdMapping],
        caller: Caller,
        find: impl Fn(&str) -> Option<PathBuf>,
    ) -> Result<UserNsPlan> {
        let uid_map = ranges("uidMappings", uid_mappings)?;
        let gid_map = ranges("gidMappings", gid_mappings)?;
        let own = |map: &[IdRange], id: u32| matches!(map, [r] if r.size == 1 && r.outside == id);
        let (setgroups, writer) = if caller.privileged() {
            (Setgroups::Allow, Writer::Direct)
        } else if own(&uid_map, caller.euid) && own(&gid_map, caller.egid) {
            (Setgroups::Deny, Writer::Direct)
        } else {
            match (find("newuidmap"), find("newgidmap")) {
                (Some(newuidmap), Some(newgidmap)) => (
                    Setgroups::Helper,
                    Writer::Helpers {
                        newuidmap,
                        newgidmap,
                    },
                ),
                _ => {
                    return Err(spec_err(format!(
                        "an unprivileged caller (uid {}, gid {}) can map only its own uid and gid \
                         (one id each) into a user namespace; other maps need newuidmap and \
                         newgidmap (Debian package `uidmap`) with ranges in /etc/subuid and \
                         /etc/subgid, and they are not in PATH",
                        caller.euid, caller.egid
                    )));
                }
            }
        };
        Ok(UserNsPlan {
            uid_map,
            gid_map,
            setgroups,
            writer,
        })
    }

    /// Whether uid `id` of the container is mapped.
    pub(super) fn maps_uid(&self, id: u32) -> bool {
        maps(&self.uid_map, id)
    }

    /// Whether gid `id` of the container is mapped.
    pub(super) fn maps_gid(&self, id: u32) -> bool {
        maps(&self.gid_map, id)
    }

    /// Whether the container may call `setgroups`.
    pub(super) fn setgroups_allowed(&self) -> bool {
        self.setgroups != Setgroups::Deny
    }

    /// Writes the maps of the new user namespace of process `pid` (which must not have
    /// changed its identity yet).
    pub(super) fn write(&self, pid: libc::pid_t) -> Result<()> {
        match &self.writer {
            Writer::Direct => {
                let proc = PathBuf::from(format!("/proc/{pid}"));
                let setgroups = match self.setgroups {
                    Setgroups::Deny => "deny",
                    Setgroups::Allow | Setgroups::Helper => "allow",
                };
                write_proc(&proc.join("setgroups"), setgroups)?;
                write_proc(&proc.join("uid_map"), &map_text(&self.uid_map))?;
                write_proc(&proc.join("gid_map"), &map_text(&self.gid_map))
            }
            Writer::Helpers {
                newuidmap,
                newgidmap,
            } => {
                run_helper(newuidmap, pid, &self.uid_map)?;
                run_helper(newgidmap, pid, &self.gid_map)
            }
        }
    }
}

fn write_proc(path: &Path, text: &str) -> Result<()> {
    // One write: the kernel takes a map only whole.
    let mut f = fs_err::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| SandboxError::io("opening a user namespace map", e))?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|e| {
        SandboxError::io(
            format!(
                "writing {:?} to {} (the container's user namespace)",
                text.trim_end(),
                path.display()
            ),
            e,
        )
    })
}

fn run_helper(helper: &Path, pid: libc::pid_t, ranges: &[IdRange]) -> Result<()> {
    let mut args: Vec<OsString> = vec![pid.to_string().into()];
    for r in ranges {
        args.extend([
            r.inside.to_string().into(),
            r.outside.to_string().into(),
            r.size.to_string().into(),
        ]);
    }
    let out = Command::new(helper)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| SandboxError::io(format!("running {}", helper.display()), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(SandboxError::Runtime {
        runtime: helper.display().to_string(),
        message: format!(
            "{} for {}: {}",
            out.status,
            map_text(ranges).trim_end().replace('\n', ", "),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// The maps of a user namespace to join, as far as they can be known in advance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct JoinedMaps {
    /// `None`: unknown (the path is not `/proc/<pid>/ns/user`); every id counts as mapped.
    pub maps: Option<(Vec<IdRange>, Vec<IdRange>)>,
    pub setgroups_denied: bool,
}

impl JoinedMaps {
    /// Reads `/proc/<pid>/{uid_map,gid_map,setgroups}` when `ns` is `/proc/<pid>/ns/user`.
    pub(super) fn read(ns: &Path) -> JoinedMaps {
        let Some(proc) = ns
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == "ns"))
            .and_then(Path::parent)
        else {
            return JoinedMaps::default();
        };
        let read = |name: &str| fs_err::read_to_string(proc.join(name)).ok();
        let maps = match (read("uid_map"), read("gid_map")) {
            (Some(u), Some(g)) => parse_map(&u).zip(parse_map(&g)),
            _ => None,
        };
        JoinedMaps {
            maps,
            setgroups_denied: read("setgroups").is_some_and(|s| s.trim() == "deny"),
        }
    }

    pub(super) fn maps_uid(&self, id: u32) -> bool {
        self.maps.as_ref().is_none_or(|(u, _)| maps(u, id))
    }

    pub(super) fn maps_gid(&self, id: u32) -> bool {
        self.maps.as_ref().is_none_or(|(_, g)| maps(g, id))
    }
}

/// `/proc/<pid>/uid_map` text (`inside outside size` per line, space-padded).
fn parse_map(text: &str) -> Option<Vec<IdRange>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some(IdRange {
                inside: f.next()??,
                outside: f.next()??,
                size: f.next()??,
            })
        })
        .collect()
}

/// The spec's user namespace: `None` without a new one; mappings only with a new one.
pub(super) fn plan(
    linux: Option<&oci_spec::runtime::Linux>,
    clone_flags: u64,
    joins: &[Join],
) -> Result<Option<UserNsPlan>> {
    let uid = linux
        .and_then(|l| l.uid_mappings().as_deref())
        .unwrap_or_default();
    let gid = linux
        .and_then(|l| l.gid_mappings().as_deref())
        .unwrap_or_default();
    if joins
        .first()
        .is_some_and(|j| j.nstype == libc::CLONE_NEWUSER)
    {
        if !uid.is_empty() || !gid.is_empty() {
            return Err(spec_err(
                "linux.uidMappings/gidMappings are set for a user namespace that is joined (it has its maps)",
            ));
        }
        return Ok(None);
    }
    if clone_flags & libc::CLONE_NEWUSER as u64 == 0 {
        if !uid.is_empty() || !gid.is_empty() {
            return Err(spec_err(
                "linux.uidMappings/gidMappings are set but there is no new user namespace",
            ));
        }
        return Ok(None);
    }
    if let Some(j) = joins.first() {
        // The init is in the new user namespace before it could join: it has no privilege
        // over namespaces owned outside it.
        return Err(spec_err(format!(
            "joining namespace {} together with a new user namespace is not supported by the \
             embedded runtime (the new user namespace cannot own it)",
            j.path.display()
        )));
    }
    UserNsPlan::new(uid, gid, Caller::current(), find_in_path).map(Some)
}

/// What a user namespace cannot mount the usual way, done as runc does there: `sysfs` without
/// a new network namespace (the kernel refuses it) becomes a read-only recursive bind of the
/// host's `/sys`; `uid=`/`gid=` options naming ids the maps leave out (devpts' `gid=5`) are
/// dropped, since the kernel refuses unmapped ids.
pub(super) fn adapt_mounts(
    mounts: &mut [MountOp],
    mapped: &dyn Fn(Option<u32>, Option<u32>) -> bool,
    new_net_ns: bool,
) {
    for m in mounts {
        let MountSource::Fs {
            fstype, options, ..
        } = &mut m.source
        else {
            continue;
        };
        if fstype.as_bytes() == b"sysfs" && !new_net_ns {
            let ro = libc::MOUNT_ATTR_RDONLY
                | libc::MOUNT_ATTR_NOSUID
                | libc::MOUNT_ATTR_NODEV
                | libc::MOUNT_ATTR_NOEXEC;
            m.source = MountSource::Bind {
                source: c"/sys".into(),
                recursive: true,
            };
            m.attrs.set |= ro;
            m.attrs.clear &= !ro;
            m.attrs.recursive_set |= ro;
            m.label = format!(
                "read-only bind of the host's /sys on {} (sysfs needs a new network namespace in a user namespace)",
                m.target.display()
            );
            continue;
        }
        options.retain(|o| {
            let id = o
                .value
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok());
            match (o.key.as_bytes(), id) {
                (b"uid", Some(id)) => mapped(Some(id), None),
                (b"gid", Some(id)) => mapped(None, Some(id)),
                _ => true,
            }
        });
    }
}

/// `cmd` in `PATH`, if it is there.
pub(super) fn find_in_path(cmd: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(cmd))
        .find(|p| {
            fs_err::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(inside: u32, outside: u32, size: u32) -> LinuxIdMapping {
        oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(inside)
            .host_id(outside)
            .size(size)
            .build()
            .unwrap()
    }

    const ROOT: Caller = Caller { euid: 0, egid: 0 };
    const USER: Caller = Caller {
        euid: 1000,
        egid: 100,
    };

    fn none(_: &str) -> Option<PathBuf> {
        None
    }

    fn helpers(cmd: &str) -> Option<PathBuf> {
        Some(Path::new("/usr/bin").join(cmd))
    }

    #[test]
    fn root_writes_any_maps_itself_and_allows_setgroups() {
        let p = UserNsPlan::new(
            &[mapping(0, 100_000, 65_536)],
            &[mapping(0, 100_000, 65_536)],
            ROOT,
            none,
        )
        .unwrap();
        assert_eq!(
            (p.setgroups, &p.writer),
            (Setgroups::Allow, &Writer::Direct)
        );
        assert!(p.setgroups_allowed());
        assert!(p.maps_uid(0) && p.maps_uid(65_535) && !p.maps_uid(65_536));
        assert_eq!(map_text(&p.uid_map), "0 100000 65536\n");
    }

    #[test]
    fn an_unprivileged_caller_maps_itself_directly_with_setgroups_denied() {
        let p = UserNsPlan::new(&[mapping(0, 1000, 1)], &[mapping(0, 100, 1)], USER, none).unwrap();
        assert_eq!((p.setgroups, &p.writer), (Setgroups::Deny, &Writer::Direct));
        assert!(!p.setgroups_allowed());
        assert!(p.maps_gid(0) && !p.maps_gid(5));
    }

    #[test]
    fn several_ranges_unprivileged_need_the_helpers() {
        let uid = [mapping(0, 1000, 1), mapping(1, 200_000, 65_536)];
        let gid = [mapping(0, 100, 1), mapping(1, 200_000, 65_536)];
        let p = UserNsPlan::new(&uid, &gid, USER, helpers).unwrap();
        assert_eq!(p.setgroups, Setgroups::Helper);
        assert!(p.setgroups_allowed());
        assert_eq!(
            p.writer,
            Writer::Helpers {
                newuidmap: "/usr/bin/newuidmap".into(),
                newgidmap: "/usr/bin/newgidmap".into()
            }
        );
        let err = UserNsPlan::new(&uid, &gid, USER, none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("newuidmap") && err.contains("uidmap"), "{err}");
        // Mapping someone else's uid is not "its own" either.
        let err = UserNsPlan::new(&[mapping(0, 0, 1)], &[mapping(0, 100, 1)], USER, none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unprivileged"), "{err}");
    }

    #[test]
    fn maps_of_a_joined_namespace_are_read_from_proc() {
        assert_eq!(
            parse_map("         0     100000      65536\n     65536 5000 1\n"),
            Some(vec![
                IdRange {
                    inside: 0,
                    outside: 100_000,
                    size: 65_536
                },
                IdRange {
                    inside: 65_536,
                    outside: 5000,
                    size: 1
                }
            ])
        );
        assert_eq!(parse_map("0 x 1\n"), None);
        let own = JoinedMaps::read(Path::new("/proc/self/ns/user"));
        let (uid, _) = own.maps.as_ref().expect("/proc/self maps are readable");
        assert!(!uid.is_empty());
        let unknown = JoinedMaps::read(Path::new("/run/some-userns"));
        assert_eq!(unknown, JoinedMaps::default());
        assert!(unknown.maps_uid(12_345) && unknown.maps_gid(5));
    }

    #[test]
    fn mounts_adapt_as_runc_does_in_a_user_namespace() {
        let mount = |dest: &str, typ: &str, options: &[&str]| {
            oci_spec::runtime::MountBuilder::default()
                .destination(dest)
                .typ(typ)
                .source(typ)
                .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
                .build()
                .unwrap()
        };
        let spec_mounts = [
            mount("/sys", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
            mount("/dev/pts", "devpts", &["newinstance", "gid=5", "mode=0620"]),
            mount("/run", "tmpfs", &["uid=0", "gid=0"]),
        ];
        let planned = super::super::mounts::plan_mounts(
            &spec_mounts,
            &super::super::mounts::CgroupMount::Cgroup2,
        )
        .unwrap();
        let p = UserNsPlan::new(
            &[mapping(0, 100_000, 1)],
            &[mapping(0, 100_000, 1)],
            ROOT,
            none,
        )
        .unwrap();
        let mapped = |u: Option<u32>, g: Option<u32>| {
            u.is_none_or(|id| p.maps_uid(id)) && g.is_none_or(|id| p.maps_gid(id))
        };
        let keys = |m: &MountOp| match &m.source {
            MountSource::Fs { options, .. } => options
                .iter()
                .map(|o| o.key.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            other => panic!("not a new filesystem: {other:?}"),
        };

        // With a new network namespace sysfs stays; gid=5 (unmapped) goes, gid=0 stays.
        let mut with_net = planned.clone();
        adapt_mounts(&mut with_net, &mapped, true);
        assert_eq!(with_net[0], planned[0]);
        assert_eq!(keys(&with_net[1]), ["newinstance", "mode"]);
        assert_eq!(keys(&with_net[2]), ["uid", "gid"]);

        // Without one, /sys becomes a read-only recursive bind of the host's.
        let mut no_net = planned.clone();
        adapt_mounts(&mut no_net, &mapped, false);
        assert_eq!(
            no_net[0].source,
            MountSource::Bind {
                source: c"/sys".into(),
                recursive: true
            }
        );
        let ro = libc::MOUNT_ATTR_RDONLY
            | libc::MOUNT_ATTR_NOSUID
            | libc::MOUNT_ATTR_NODEV
            | libc::MOUNT_ATTR_NOEXEC;
        assert_eq!(no_net[0].attrs.set & ro, ro);
        assert_eq!(no_net[0].attrs.recursive_set & ro, ro);
        assert!(
            no_net[0].label.contains("host's /sys"),
            "{}",
            no_net[0].label
        );
    }

    #[test]
    fn bad_maps_are_refused() {
        let ok = [mapping(0, 1000, 1)];
        let err = |uid: &[LinuxIdMapping]| {
            UserNsPlan::new(uid, &ok, ROOT, none)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[]).contains("needs linux.uidMappings"));
        assert!(err(&[mapping(0, 1000, 0)]).contains("empty"));
        assert!(err(&[mapping(u32::MAX, 1000, 2)]).contains("2^32"));
        assert!(err(&[mapping(0, 1000, 10), mapping(5, 5000, 1)]).contains("overlaps"));
        assert!(err(&[mapping(0, 1000, 10), mapping(20, 1005, 1)]).contains("overlaps"));
        let many: Vec<LinuxIdMapping> = (0..341).map(|i| mapping(i, 1000 + i, 1)).collect();
        assert!(err(&many).contains("at most 340"));
    }
}
