//! `USER` resolved from the rootfs's `/etc/passwd` and `/etc/group`.
//!
//! Responsible for: turning a Dockerfile `USER` value (`""`, `name`, `uid`, `name:group`,
//! `uid:gid`, `name:gid`, `uid:group`) into numeric ids, supplementary groups and a home
//! directory, with the rules of moby/sys `user.GetExecUser` (what runc, containerd, BuildKit and
//! Docker use); and reading the image's files without leaving the rootfs.
//!
//! Not responsible for: switching identity (the runtime does, from the numeric ids in the spec),
//! `--group-add`, user namespaces.
//!
//! The rules, as moby/sys `user/user.go` has them:
//! - the spec splits at the first `:` into user and group; an empty user means uid 0 (the
//!   default), looked up by uid;
//! - a number is a uid/gid (0..=2^31-1) and matches only by id, anything else only by name; the
//!   first matching line wins;
//! - a user found in passwd gives uid, gid and home; a number not in passwd is still fine (gid 0,
//!   home `/`, runc's defaults); a name not found is an error;
//! - an explicit group replaces the gid (a number need not be in `/etc/group`, a name must), and
//!   then there are no supplementary groups; without one, the supplementary groups are the
//!   groups whose member list names the user found in passwd, in file order;
//! - a missing (or non-regular) `/etc/passwd` or `/etc/group` counts as empty; `#` comments are
//!   skipped in `/etc/group` only, as in moby/sys.
//!
//! Both files are opened with `openat2(RESOLVE_IN_ROOT)` from a descriptor of the rootfs, so an
//! image whose `/etc/passwd` is a symlink to `../../../etc/shadow` or `/proc/1/root/...` reads a
//! file inside the rootfs (or nothing), never one of the host's (the class of bug of
//! CVE-2019-14271 and CVE-2018-15664).

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::{Result, SandboxError};

/// The identity a container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, in `/etc/group` order.
    pub additional_gids: Vec<u32>,
    /// From `/etc/passwd`, or `/` (runc's default) when the user has no entry.
    pub home: String,
}

impl Default for User {
    /// root, with runc's default home `/`.
    fn default() -> Self {
        Self {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/".to_owned(),
        }
    }
}

/// Larger user databases are refused, as moby/sys does (`maxUserFileBytes`, 10 MiB).
const MAX_FILE_BYTES: u64 = 10 << 20;

/// The highest uid/gid accepted (moby/sys: `1<<31 - 1`, for 32-bit compatibility).
const MAX_ID: i64 = (1 << 31) - 1;

/// Resolve `user` (a Dockerfile `USER` value) against the image at `rootfs`.
pub fn resolve(rootfs: &Path, user: &str) -> Result<User> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SandboxError::io(format!("open rootfs {}", rootfs.display()), e.into()))?;
    let passwd = read_in_root(&root, rootfs, "etc/passwd")?;
    let group = read_in_root(&root, rootfs, "etc/group")?;
    resolve_from(user, passwd.as_deref(), group.as_deref())
}

/// Read `path` (relative) inside the root `root`; `None` when it does not exist or is not a
/// regular file.
fn read_in_root(root: &OwnedFd, rootfs: &Path, path: &str) -> Result<Option<String>> {
    let shown = || rootfs.join(path).display().to_string();
    let fd = match rustix::fs::openat2(
        root,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        // Not there, or not a usable file (a dangling link, a directory in the way, a loop):
        // moby/sys treats any open failure as "no file".
        Err(_) => return Ok(None),
    };
    let stat = rustix::fs::fstat(&fd)
        .map_err(|e| SandboxError::io(format!("stat {}", shown()), e.into()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SandboxError::io(format!("read {}", shown()), e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(SandboxError::io(
            format!("read {}", shown()),
            std::io::Error::other(format!("larger than {MAX_FILE_BYTES} bytes")),
        ));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// One side of a `user:group` spec: an id or a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg<'a> {
    Id(u32),
    Name(&'a str),
}

impl<'a> Arg<'a> {
    /// `None` for an empty string; an id when the text parses as an integer (which must be in
    /// 0..=2^31-1, as moby/sys's `parseNumeric`).
    fn parse(text: &'a str) -> Result<Option<Self>> {
        if text.is_empty() {
            return Ok(None);
        }
        let numeric = text.strip_prefix(['+', '-']).unwrap_or(text);
        if numeric.is_empty() || !numeric.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Some(Self::Name(text)));
        }
        match text.parse::<i64>() {
            Ok(id) if (0..=MAX_ID).contains(&id) => Ok(Some(Self::Id(id as u32))),
            _ => Err(SandboxError::Spec(format!(
                "user `{text}`: uids and gids must be in range 0-{MAX_ID}"
            ))),
        }
    }
}

/// A `/etc/passwd` line: `name:password:UID:GID:GECOS:directory:shell`.
struct PasswdEntry<'a> {
    name: &'a str,
    uid: i64,
    gid: i64,
    home: &'a str,
}

/// A `/etc/group` line: `group_name:password:GID:user_list`.
struct GroupEntry<'a> {
    name: &'a str,
    gid: i64,
    members: Vec<&'a str>,
}

/// Go's `strconv.Atoi` with errors ignored, as moby/sys parses these fields: 0 when invalid.
fn number(field: Option<&str>) -> i64 {
    field.and_then(|f| f.parse().ok()).unwrap_or(0)
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut f = line.split(':');
            let name = f.next().unwrap_or_default();
            let _password = f.next();
            let uid = number(f.next());
            let gid = number(f.next());
            let _gecos = f.next();
            let home = f.next().unwrap_or_default();
            PasswdEntry {
                name,
                uid,
                gid,
                home,
            }
        })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut f = line.split(':');
            let name = f.next().unwrap_or_default();
            let _password = f.next();
            let gid = number(f.next());
            let members = match f.next() {
                Some(list) if !list.is_empty() => list.split(',').collect(),
                _ => Vec::new(),
            };
            GroupEntry { name, gid, members }
        })
}

/// An id read from a file, checked like moby/sys checks ids (0..=2^31-1).
fn file_id(id: i64, what: &str, file: &str) -> Result<u32> {
    u32::try_from(id)
        .ok()
        .filter(|id| i64::from(*id) <= MAX_ID)
        .ok_or_else(|| SandboxError::Spec(format!("{what} in {file}: id {id} is out of range")))
}

/// [`resolve`] on the files' contents (`None`: the file is missing).
fn resolve_from(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<User> {
    let (user_text, group_text) = spec.split_once(':').unwrap_or((spec, ""));
    let user_arg = Arg::parse(user_text)?;
    let group_arg = Arg::parse(group_text)?;
    let unknown_user = || SandboxError::UnknownUser {
        user: user_text.to_owned(),
        file: "/etc/passwd",
    };

    let mut out = User::default();
    let found = passwd.and_then(|text| {
        passwd_entries(text).find(|e| match user_arg {
            None => e.uid == 0,
            Some(Arg::Id(uid)) => e.uid == i64::from(uid),
            Some(Arg::Name(name)) => e.name == name,
        })
    });
    let matched_name = match (&found, user_arg) {
        (Some(entry), _) => {
            out.uid = file_id(entry.uid, entry.name, "/etc/passwd")?;
            out.gid = file_id(entry.gid, entry.name, "/etc/passwd")?;
            out.home = entry.home.to_owned();
            Some(entry.name)
        }
        (None, Some(Arg::Id(uid))) => {
            out.uid = uid;
            None
        }
        (None, Some(Arg::Name(_))) => return Err(unknown_user()),
        (None, None) => None,
    };

    match group_arg {
        Some(arg) => {
            let found = group.and_then(|text| {
                group_entries(text).find(|g| match arg {
                    Arg::Id(gid) => g.gid == i64::from(gid),
                    Arg::Name(name) => g.name == name,
                })
            });
            out.gid = match (found, arg) {
                (Some(g), _) => file_id(g.gid, g.name, "/etc/group")?,
                (None, Arg::Id(gid)) => gid,
                (None, Arg::Name(name)) => {
                    return Err(SandboxError::UnknownUser {
                        user: name.to_owned(),
                        file: "/etc/group",
                    });
                }
            };
        }
        None => {
            if let (Some(name), Some(text)) = (matched_name, group) {
                for g in group_entries(text).filter(|g| g.members.contains(&name)) {
                    out.additional_gids
                        .push(file_id(g.gid, g.name, "/etc/group")?);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
  app:x:1000:1000:App,,,:/home/app:/bin/sh

www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
dup:x:1000:5:second entry for uid 1000:/nowhere:/bin/sh
";
    const GROUP: &str = "\
root:x:0:
# a comment line
daemon:x:1:
tty:x:5:app
staff:x:50:root,app
app:x:1000:
docker:x:999:other, app ,app
";

    fn user(uid: u32, gid: u32, groups: &[u32], home: &str) -> User {
        User {
            uid,
            gid,
            additional_gids: groups.to_vec(),
            home: home.to_owned(),
        }
    }

    fn r(spec: &str) -> Result<User> {
        resolve_from(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn empty_is_root_from_passwd() {
        assert_eq!(r("").unwrap(), user(0, 0, &[50], "/root"));
        assert_eq!(resolve_from("", None, None).unwrap(), User::default());
    }

    #[test]
    fn name_gives_ids_home_and_supplementary_groups() {
        // "docker" lists " app " with spaces: not a match, as in moby/sys; duplicates stay out
        // because the member list is matched once per group.
        assert_eq!(
            r("app").unwrap(),
            user(1000, 1000, &[5, 50, 999], "/home/app")
        );
        assert_eq!(r("www-data").unwrap(), user(33, 33, &[], "/var/www"));
    }

    #[test]
    fn uid_matches_by_id_first_entry_wins() {
        assert_eq!(
            r("1000").unwrap(),
            user(1000, 1000, &[5, 50, 999], "/home/app")
        );
        assert_eq!(r("0").unwrap(), user(0, 0, &[50], "/root"));
    }

    #[test]
    fn numeric_uid_missing_from_passwd_is_fine() {
        assert_eq!(r("4242").unwrap(), user(4242, 0, &[], "/"));
        assert_eq!(
            resolve_from("4242", None, None).unwrap(),
            user(4242, 0, &[], "/")
        );
        assert_eq!(r("4242:4343").unwrap(), user(4242, 4343, &[], "/"));
    }

    #[test]
    fn explicit_group_replaces_gid_and_drops_supplementary_groups() {
        assert_eq!(r("app:staff").unwrap(), user(1000, 50, &[], "/home/app"));
        assert_eq!(r("app:7").unwrap(), user(1000, 7, &[], "/home/app"));
        assert_eq!(r("1000:daemon").unwrap(), user(1000, 1, &[], "/home/app"));
        assert_eq!(r("1000:1").unwrap(), user(1000, 1, &[], "/home/app"));
        assert_eq!(r(":staff").unwrap(), user(0, 50, &[], "/root"));
    }

    #[test]
    fn unknown_names_are_errors_naming_the_file() {
        match r("nobody-here") {
            Err(SandboxError::UnknownUser { user, file }) => {
                assert_eq!((user.as_str(), file), ("nobody-here", "/etc/passwd"));
            }
            other => panic!("{other:?}"),
        }
        match r("app:no-group") {
            Err(SandboxError::UnknownUser { user, file }) => {
                assert_eq!((user.as_str(), file), ("no-group", "/etc/group"));
            }
            other => panic!("{other:?}"),
        }
        // A comment line is not a group.
        assert!(r("app:# a comment line").is_err());
        // No passwd at all: a name cannot be found.
        assert!(matches!(
            resolve_from("app", None, Some(GROUP)),
            Err(SandboxError::UnknownUser {
                file: "/etc/passwd",
                ..
            })
        ));
        assert!(matches!(
            resolve_from("1:staff", Some(PASSWD), None),
            Err(SandboxError::UnknownUser {
                file: "/etc/group",
                ..
            })
        ));
    }

    #[test]
    fn ids_out_of_range_are_errors() {
        assert!(matches!(r("2147483648"), Err(SandboxError::Spec(_))));
        assert!(matches!(r("-1"), Err(SandboxError::Spec(_))));
        assert!(matches!(r("0:99999999999"), Err(SandboxError::Spec(_))));
        assert_eq!(r("2147483647").unwrap().uid, 2_147_483_647);
        assert_eq!(r("+5").unwrap().uid, 5, "Go's Atoi accepts a sign");
    }

    fn write(path: &Path, text: &str) {
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
    }

    #[test]
    fn reads_the_rootfs_files() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("etc/passwd"), PASSWD);
        write(&dir.path().join("etc/group"), GROUP);
        assert_eq!(
            resolve(dir.path(), "app").unwrap(),
            user(1000, 1000, &[5, 50, 999], "/home/app")
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(resolve(empty.path(), "").unwrap(), User::default());
        assert_eq!(
            resolve(empty.path(), "12:34").unwrap(),
            user(12, 34, &[], "/")
        );
        assert!(resolve(&empty.path().join("missing"), "").is_err());
    }

    #[test]
    fn symlinks_resolve_inside_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        // A "host" passwd next to the rootfs, which the image's links try to reach.
        write(
            &dir.path().join("host/passwd"),
            "hostonly:x:7:7::/host:/bin/sh\n",
        );
        let rootfs = dir.path().join("rootfs");
        fs_err::create_dir_all(rootfs.join("etc")).unwrap();
        std::os::unix::fs::symlink("/../../host/passwd", rootfs.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../host/passwd", rootfs.join("etc/group")).unwrap();
        assert!(matches!(
            resolve(&rootfs, "hostonly"),
            Err(SandboxError::UnknownUser { .. })
        ));
        // The same absolute link resolves to the rootfs's own file once that exists.
        write(&rootfs.join("host/passwd"), "inside:x:8:9::/in:/bin/sh\n");
        assert_eq!(resolve(&rootfs, "inside").unwrap(), user(8, 9, &[], "/in"));
        // A link through /proc (a magic link) is not followed either.
        fs_err::remove_file(rootfs.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/proc/self/root/etc/passwd", rootfs.join("etc/passwd"))
            .unwrap();
        assert!(resolve(&rootfs, "root").is_err());
    }

    #[test]
    fn non_regular_files_count_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve(dir.path(), "5").unwrap(), user(5, 0, &[], "/"));
        assert!(resolve(dir.path(), "app").is_err());
    }
}
