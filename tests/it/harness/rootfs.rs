//! A busybox root filesystem as a plain directory, for tests that run containers directly
//! (the sandbox tests), without building an image.
//!
//! Made from Debian's `busybox-static` (`/bin/busybox`): the binary, one symlink per applet
//! (`busybox --list-full`), `/etc/passwd` (root, nobody, app 1000), `/etc/group` (root, nobody,
//! app 1000, and `extra` 2000 with app as a member), `/tmp` 1777, `/root`, `/home/app`, and
//! empty `/proc`, `/dev`, `/sys` mount points. Every call makes a new copy in its own temp dir
//! (a 2 MB copy plus ~270 symlinks), so tests can change theirs and run in parallel.

use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{Skip, tempdir};

/// Where busybox-static puts its binary.
const BUSYBOX: &str = "/bin/busybox";

/// `/etc/passwd` of the fixture.
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
app:x:1000:1000::/home/app:/bin/sh\n";

/// `/etc/group` of the fixture.
pub const GROUP: &str = "root:x:0:\nnobody:x:65534:\napp:x:1000:\nextra:x:2000:app\n";

/// A busybox rootfs (see the module docs). The directory is removed when the returned
/// [`tempfile::TempDir`] is dropped; the rootfs is its `rootfs` subdirectory
/// ([`BusyboxRootfs::path`]), so the test can put other files next to it.
pub fn busybox_rootfs() -> Result<BusyboxRootfs, Skip> {
    let applets = applets()?;
    let dir = tempdir();
    let root = dir.path().join("rootfs");
    let mkdir = |p: &str, mode: u32| {
        let path = root.join(p);
        fs_err::create_dir_all(&path).unwrap_or_else(|e| panic!("{e}"));
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{e}"));
    };
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "dev", "sys",
    ] {
        mkdir(d, 0o755);
    }
    mkdir("root", 0o700);
    mkdir("tmp", 0o1777);
    mkdir("home/app", 0o755);
    std::os::unix::fs::chown(root.join("home/app"), Some(1000), Some(1000))
        .unwrap_or_else(|e| panic!("chown home/app: {e}"));
    fs_err::copy(BUSYBOX, root.join("bin/busybox")).unwrap_or_else(|e| panic!("{e}"));
    for applet in applets {
        let link = root.join(applet);
        if link.as_os_str() == root.join("bin/busybox").as_os_str() {
            continue;
        }
        symlink("/bin/busybox", &link)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
    }
    fs_err::write(root.join("etc/passwd"), PASSWD).unwrap_or_else(|e| panic!("{e}"));
    fs_err::write(root.join("etc/group"), GROUP).unwrap_or_else(|e| panic!("{e}"));
    fs_err::write(root.join("etc/hosts"), "127.0.0.1\tlocalhost\n")
        .unwrap_or_else(|e| panic!("{e}"));
    Ok(BusyboxRootfs { dir, root })
}

/// A rootfs made by [`busybox_rootfs`].
#[derive(Debug)]
pub struct BusyboxRootfs {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl BusyboxRootfs {
    /// The rootfs directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The temp dir holding the rootfs (for files that must be outside it).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

/// The applet paths (`bin/sh`, `usr/bin/env`, ...), read once per process.
fn applets() -> Result<Vec<PathBuf>, Skip> {
    static APPLETS: OnceLock<Result<Vec<PathBuf>, Skip>> = OnceLock::new();
    APPLETS
        .get_or_init(|| {
            if !Path::new(BUSYBOX).is_file() {
                return Err(Skip::new(
                    "busybox-static is not installed (apt-get install busybox-static)",
                ));
            }
            if has_interpreter(Path::new(BUSYBOX)) {
                return Err(Skip::new(format!(
                    "{BUSYBOX} is dynamically linked (install busybox-static, not busybox)"
                )));
            }
            let out = Command::new(BUSYBOX)
                .arg("--list-full")
                .output()
                .map_err(|e| Skip::new(format!("cannot run {BUSYBOX}: {e}")))?;
            if !out.status.success() {
                return Err(Skip::new(format!("{BUSYBOX} --list-full failed")));
            }
            Ok(String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.is_empty() && !l.contains(".."))
                .map(PathBuf::from)
                .collect())
        })
        .clone()
}

/// Whether the 64-bit ELF file at `path` has a `PT_INTERP` program header (is dynamically
/// linked). Unreadable or other files count as static.
fn has_interpreter(path: &Path) -> bool {
    let Ok(bytes) = fs_err::read(path) else {
        return false;
    };
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    // ELFCLASS64, little-endian only (x86_64, aarch64).
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let at = phoff as usize + i * usize::from(phentsize);
        u32_at(at) == Some(3) // PT_INTERP
    })
}
