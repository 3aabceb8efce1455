//! Verifying, where the kernel shows it, that an upperdir is not mounted with the overlay
//! features that make it an incomplete record of its changes (`redirect_dir=on`,
//! `metacopy=on`; see the module docs of [`super`]).
//!
//! Overlayfs lists `redirect_dir=` and `metacopy=` in its mount options only when they differ
//! from the module defaults (`ovl_show_options`), so an absent option means the value in
//! `/sys/module/overlay/parameters`. An upperdir that is not mounted right now is not checked
//! here; the per-entry xattr check still refuses what such a mount left behind.

use std::path::{Path, PathBuf};

use super::{DiffError, Result};

const MOUNTINFO: &str = "/proc/self/mountinfo";
const MODULE_PARAMETERS: &str = "/sys/module/overlay/parameters";

/// Refuse `upperdir` if an overlay mount visible to this process uses it with
/// `redirect_dir=on` or `metacopy=on`.
pub fn check_mounts(upperdir: &Path) -> Result<()> {
    let Ok(text) = fs_err::read_to_string(MOUNTINFO) else {
        // No procfs (a minimal sandbox): nothing to verify against.
        return Ok(());
    };
    let upperdir = upperdir.canonicalize().map_err(|source| DiffError::Read {
        path: upperdir.to_owned(),
        source,
    })?;
    let mut defaults = None;
    for mount in overlay_mounts(&text) {
        if mount.upperdir.as_deref() != Some(upperdir.as_path()) {
            continue;
        }
        let defaults = defaults.get_or_insert_with(ModuleDefaults::read);
        if let Some(option) = mount.unsafe_option(defaults) {
            return Err(DiffError::UnsafeMount {
                upperdir,
                mountpoint: mount.mountpoint,
                option,
            });
        }
    }
    Ok(())
}

/// The overlay module's compiled-in or configured defaults.
#[derive(Debug, Default, Clone, Copy)]
struct ModuleDefaults {
    redirect_dir: bool,
    metacopy: bool,
}

impl ModuleDefaults {
    fn read() -> Self {
        let flag = |name: &str| {
            fs_err::read_to_string(Path::new(MODULE_PARAMETERS).join(name))
                .is_ok_and(|v| v.trim() == "Y")
        };
        Self {
            redirect_dir: flag("redirect_dir"),
            metacopy: flag("metacopy"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct OverlayMount {
    mountpoint: PathBuf,
    upperdir: Option<PathBuf>,
    redirect_dir: Option<String>,
    metacopy: Option<String>,
}

impl OverlayMount {
    fn unsafe_option(&self, defaults: &ModuleDefaults) -> Option<&'static str> {
        // Only `on` creates redirects; `follow`, `nofollow` and `off` do not.
        let redirect = match self.redirect_dir.as_deref() {
            Some(v) => v == "on",
            None => defaults.redirect_dir,
        };
        let metacopy = match self.metacopy.as_deref() {
            Some(v) => v == "on",
            None => defaults.metacopy,
        };
        if redirect {
            Some("redirect_dir=on")
        } else if metacopy {
            Some("metacopy=on")
        } else {
            None
        }
    }
}

/// Overlay mounts in `/proc/self/mountinfo` text (proc(5): fields, ` - `, fstype, source,
/// super options).
fn overlay_mounts(text: &str) -> impl Iterator<Item = OverlayMount> + '_ {
    text.lines().filter_map(|line| {
        let (head, tail) = line.split_once(" - ")?;
        let mut tail = tail.split(' ');
        if tail.next()? != "overlay" {
            return None;
        }
        let _source = tail.next()?;
        let options = tail.next().unwrap_or("");
        let mountpoint = PathBuf::from(unescape(head.split(' ').nth(4)?));
        let mut mount = OverlayMount {
            mountpoint,
            upperdir: None,
            redirect_dir: None,
            metacopy: None,
        };
        for option in options.split(',') {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            match key {
                "upperdir" => mount.upperdir = Some(PathBuf::from(unescape(value))),
                "redirect_dir" => mount.redirect_dir = Some(value.to_owned()),
                "metacopy" => mount.metacopy = Some(value.to_owned()),
                _ => {}
            }
        }
        Some(mount)
    })
}

/// Undo the kernel's `\ooo` octal escapes (space, tab, newline, backslash, and in overlay
/// options also `,` and `=`).
fn unescape(s: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(s)).into_owned()
}

/// [`unescape`] as raw bytes (paths need not be UTF-8); also used for mountpoints by
/// `snapshot::mountpoint`.
pub(crate) fn unescape_bytes(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
44 27 0:39 / /tmp/a\\040b/m rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/tmp/a\\040b/u,workdir=/w,uuid=on
45 27 0:40 / /m2 rw - overlay overlay rw,lowerdir=/l,upperdir=/u2,workdir=/w2,redirect_dir=on
46 27 0:41 / /m3 rw - overlay overlay rw,lowerdir=/l,upperdir=/u3,workdir=/w3,redirect_dir=follow,metacopy=on
";

    #[test]
    fn parses_overlay_mounts_and_escapes() {
        let mounts: Vec<_> = overlay_mounts(TEXT).collect();
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].mountpoint, PathBuf::from("/tmp/a b/m"));
        assert_eq!(mounts[0].upperdir.as_deref(), Some(Path::new("/tmp/a b/u")));
        assert_eq!(mounts[1].redirect_dir.as_deref(), Some("on"));
        assert_eq!(mounts[2].metacopy.as_deref(), Some("on"));
    }

    #[test]
    fn absent_options_take_module_defaults() {
        let mounts: Vec<_> = overlay_mounts(TEXT).collect();
        let off = ModuleDefaults::default();
        let on = ModuleDefaults {
            redirect_dir: true,
            metacopy: false,
        };
        assert_eq!(mounts[0].unsafe_option(&off), None);
        assert_eq!(mounts[0].unsafe_option(&on), Some("redirect_dir=on"));
        assert_eq!(mounts[1].unsafe_option(&off), Some("redirect_dir=on"));
        assert_eq!(mounts[2].unsafe_option(&on), Some("metacopy=on"));
    }
}
