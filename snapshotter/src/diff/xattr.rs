//! Reading an entry's xattrs and sorting them into the ones a layer keeps and the ones that
//! are overlayfs's own metadata (`Documentation/filesystems/overlayfs.rst`).
//!
//! Overlay-internal xattrs live under [`OverlayXattrs::prefix`]: `opaque` marks an opaque
//! directory, `redirect` and `metacopy` make the upperdir incomplete (refused), `whiteout` and
//! `opaque=x` belong to data-only lower layers (refused), and the rest (`origin`, `impure`,
//! `nlink`, `upper`, `uuid`, `protattr`, ...) are bookkeeping that a layer must not carry. Since
//! Linux 6.7 an xattr a user set through the overlay under the overlay prefix is stored escaped
//! as `<prefix>overlay.<name>`; it is kept under its real name `<prefix><name>`.

use std::io;
use std::path::Path;

use rustix::io::Errno;

use super::{DiffError, OverlayXattrs, Result};
use crate::layer::Xattr;

/// The host's SELinux label is not content (Docker and BuildKit never emit it either).
const SELINUX: &str = "security.selinux";

/// An upperdir entry's xattrs, classified.
#[derive(Debug, Default)]
pub(super) struct UpperXattrs {
    /// Kept xattrs, sorted by name.
    pub kept: Vec<Xattr>,
    /// `<prefix>opaque` is `y`.
    pub opaque: bool,
}

enum Class {
    Keep(String),
    Skip,
    Opaque,
    Redirect,
    Metacopy,
    DataOnly,
}

fn classify(name: &str, ns: OverlayXattrs) -> Class {
    let prefix = ns.prefix();
    let Some(rest) = name.strip_prefix(prefix) else {
        return if name == SELINUX {
            Class::Skip
        } else {
            Class::Keep(name.to_owned())
        };
    };
    if let Some(escaped) = rest.strip_prefix("overlay.") {
        return Class::Keep(format!("{prefix}{escaped}"));
    }
    match rest {
        "opaque" => Class::Opaque,
        "redirect" => Class::Redirect,
        "metacopy" => Class::Metacopy,
        "whiteout" => Class::DataOnly,
        _ => Class::Skip,
    }
}

/// Read and classify the xattrs of an upperdir entry (without following a symlink).
pub(super) fn read_upper(path: &Path, ns: OverlayXattrs) -> Result<UpperXattrs> {
    let mut out = UpperXattrs::default();
    for name in list(path)? {
        let name = std::str::from_utf8(&name).map_err(|_| DiffError::NonUtf8Xattr {
            path: path.to_owned(),
            name: name.clone(),
        })?;
        match classify(name, ns) {
            Class::Skip => {}
            Class::Keep(real) => {
                if let Some(value) = get(path, name)? {
                    out.kept.push(Xattr { name: real, value });
                }
            }
            Class::Opaque => match get(path, name)?.as_deref() {
                Some(b"y") => out.opaque = true,
                None => {}
                Some(other) => {
                    return Err(DiffError::UnsupportedOverlayXattr {
                        path: path.to_owned(),
                        xattr: name.to_owned(),
                        value: other.to_vec(),
                    });
                }
            },
            Class::Redirect => {
                return Err(DiffError::Redirect {
                    path: path.to_owned(),
                    xattr: name.to_owned(),
                });
            }
            Class::Metacopy => {
                return Err(DiffError::Metacopy {
                    path: path.to_owned(),
                    xattr: name.to_owned(),
                });
            }
            Class::DataOnly => {
                return Err(DiffError::UnsupportedOverlayXattr {
                    path: path.to_owned(),
                    xattr: name.to_owned(),
                    value: get(path, name)?.unwrap_or_default(),
                });
            }
        }
    }
    out.kept.sort();
    Ok(out)
}

/// The xattrs of a lower-view entry that a layer would keep, sorted by name. The lower view is
/// only compared with, so overlay metadata there is ignored rather than refused.
pub(super) fn read_kept(path: &Path, ns: OverlayXattrs) -> Result<Vec<Xattr>> {
    let mut kept = Vec::new();
    for name in list(path)? {
        let Ok(name) = std::str::from_utf8(&name) else {
            // Not representable in a layer; a difference here cannot make the entries equal.
            kept.push(Xattr {
                name: String::from_utf8_lossy(&name).into_owned(),
                value: Vec::new(),
            });
            continue;
        };
        if let Class::Keep(real) = classify(name, ns)
            && let Some(value) = get(path, name)?
        {
            kept.push(Xattr { name: real, value });
        }
    }
    kept.sort();
    Ok(kept)
}

/// `llistxattr`, split into names. One syscall for the common case of few or no xattrs.
fn list(path: &Path) -> Result<Vec<Vec<u8>>> {
    let err = |source: io::Error| DiffError::Xattr {
        path: path.to_owned(),
        name: "(list)".to_owned(),
        source,
    };
    let mut small = [0u8; 1024];
    let raw: Vec<u8> = match rustix::fs::llistxattr(path, &mut small[..]) {
        Ok(n) => small[..n].to_vec(),
        Err(Errno::RANGE) => loop {
            let size = rustix::fs::llistxattr_query(path).map_err(|e| err(e.into()))?;
            let mut buf = vec![0u8; size];
            match rustix::fs::llistxattr(path, &mut buf[..]) {
                Ok(n) => {
                    buf.truncate(n);
                    break buf;
                }
                Err(Errno::RANGE) => continue,
                Err(e) => return Err(err(e.into())),
            }
        },
        // Filesystems without xattr support have none to report.
        Err(Errno::NOTSUP) => Vec::new(),
        Err(e) => return Err(err(e.into())),
    };
    Ok(raw
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// `lgetxattr`; `None` if the xattr disappeared since it was listed.
fn get(path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let err = |source: io::Error| DiffError::Xattr {
        path: path.to_owned(),
        name: name.to_owned(),
        source,
    };
    let mut small = [0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut small[..]) {
        Ok(n) => return Ok(Some(small[..n].to_vec())),
        Err(Errno::NODATA) => return Ok(None),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(err(e.into())),
    }
    loop {
        let size = match rustix::fs::lgetxattr_query(path, name) {
            Ok(size) => size,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(err(e.into())),
        };
        let mut buf = vec![0u8; size];
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) => continue,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(err(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(name: &str, ns: OverlayXattrs) -> Option<String> {
        match classify(name, ns) {
            Class::Keep(real) => Some(real),
            _ => None,
        }
    }

    #[test]
    fn overlay_metadata_is_not_content() {
        let t = OverlayXattrs::Trusted;
        assert_eq!(kept("trusted.overlay.origin", t), None);
        assert_eq!(kept("trusted.overlay.impure", t), None);
        assert_eq!(kept("security.selinux", t), None);
        assert_eq!(
            kept("security.capability", t).as_deref(),
            Some("security.capability")
        );
        assert_eq!(
            kept("user.overlay.opaque", t).as_deref(),
            Some("user.overlay.opaque")
        );
        assert_eq!(kept("trusted.other", t).as_deref(), Some("trusted.other"));
        assert!(matches!(
            classify("trusted.overlay.opaque", t),
            Class::Opaque
        ));
        assert!(matches!(
            classify("trusted.overlay.redirect", t),
            Class::Redirect
        ));
        assert!(matches!(
            classify("trusted.overlay.metacopy", t),
            Class::Metacopy
        ));
    }

    #[test]
    fn user_namespace_and_escapes() {
        let u = OverlayXattrs::User;
        assert!(matches!(classify("user.overlay.opaque", u), Class::Opaque));
        assert_eq!(kept("user.overlay.origin", u), None);
        assert_eq!(
            kept("user.overlay.overlay.opaque", u).as_deref(),
            Some("user.overlay.opaque")
        );
        assert_eq!(
            kept("trusted.overlay.overlay.x", OverlayXattrs::Trusted).as_deref(),
            Some("trusted.overlay.x")
        );
        assert_eq!(
            kept("trusted.overlay.opaque", u).as_deref(),
            Some("trusted.overlay.opaque")
        );
    }
}
