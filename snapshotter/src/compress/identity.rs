//! Member keys: what lets a re-export know that a member's tar bytes are unchanged *without
//! reading the files they hold*.
//!
//! A member's key is a SHA-256 over, for every piece of an entry the member holds, the digest of
//! the entry's tar headers, the [`FileIdentity`] of its content (device, inode, size, mtime,
//! ctime, from `lstat`), and which part of the entry the member holds. Headers carry the path,
//! type, mode, owner, mtime, size, link target and xattrs; the identity stands for the content.
//! Two members with the same key and position hold the same tar bytes as long as the identity of
//! a file changes whenever its content does. The kernel sets ctime to the current time on every
//! write, truncate, chmod, link or rename, and nothing but the clock can set it back; so the
//! identity is trusted when:
//!
//! - its ctime is more than [`RACY_MARGIN`] older than the export that records it (a write in
//!   the same timestamp tick as the export's read would keep the ctime: git's "racily clean"
//!   files; filesystems with one- or two-second timestamps are covered by the margin), and
//! - the caller took it from the file it then reads (an `lstat` before `open`; [`FileIdentity`]
//!   documents this), on a local filesystem that keeps ctime (not a FUSE or network filesystem
//!   that fakes it).
//!
//! A file whose identity is not trusted, or a file given only as a reader, makes its member(s)
//! keyless: they are always read and hashed. Entries without content (directories, links,
//! devices, empty files) are keyed by their headers alone.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// How much older than the export a file's ctime must be for its identity to be recorded.
pub const RACY_MARGIN: Duration = Duration::from_secs(2);

/// Domain separation for member keys (bump with the key material below).
const KEY_DOMAIN: &[u8] = b"kiln.layer.member-key.v1\0";

/// What identifies a regular file's content without reading it: `st_dev`, `st_ino`, `st_size`,
/// `st_mtime` and `st_ctime` (with nanoseconds) from `lstat`.
///
/// Take it from the file whose content the layer gets, before reading it: a change after the
/// `lstat` moves ctime, so the next export sees a different identity and reads the file again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
    pub ctime_sec: i64,
    pub ctime_nsec: i64,
}

impl FileIdentity {
    /// The identity of the file `meta` describes (from `symlink_metadata` or `File::metadata`).
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime_sec: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }

    /// Whether the ctime is older than `export_start` by more than [`RACY_MARGIN`].
    pub(crate) fn settled_before(&self, export_start: SystemTime) -> bool {
        let Ok(start) = export_start.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let Some(limit) = start.checked_sub(RACY_MARGIN) else {
            return false;
        };
        let Ok(secs) = u64::try_from(self.ctime_sec) else {
            return false;
        };
        let nanos = u32::try_from(self.ctime_nsec.clamp(0, 999_999_999)).unwrap_or(0);
        Duration::new(secs, nanos) < limit
    }

    fn bytes(&self) -> [u8; 56] {
        let mut out = [0u8; 56];
        let fields = [
            self.dev,
            self.ino,
            self.size,
            self.mtime_sec as u64,
            self.mtime_nsec as u64,
            self.ctime_sec as u64,
            self.ctime_nsec as u64,
        ];
        for (chunk, field) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        out
    }
}

/// What stands for an entry's content in a member key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ident {
    /// No data: the headers say everything.
    NoContent,
    /// A file with a trusted identity.
    File(FileIdentity),
    /// Content the key cannot vouch for: the member gets no key.
    Unknown,
}

impl Ident {
    /// The key material for an entry with `data_len` bytes of data and this identity, as seen
    /// by an export that started at `export_start`.
    pub(crate) fn resolve(
        data_len: u64,
        identity: Option<&FileIdentity>,
        export_start: SystemTime,
    ) -> Self {
        match identity {
            _ if data_len == 0 => Ident::NoContent,
            Some(id) if id.size == data_len && id.settled_before(export_start) => Ident::File(*id),
            _ => Ident::Unknown,
        }
    }
}

/// One piece of an entry in a member: `[from, to)` of its data, with or without its headers and
/// padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) headers: bool,
    pub(crate) padding: bool,
}

/// The key of the member being built; `None` once a piece without a trusted identity joined.
pub(crate) struct KeyBuilder(Option<Sha256>);

impl KeyBuilder {
    pub(crate) fn new() -> Self {
        let mut hasher = Sha256::new();
        hasher.update(KEY_DOMAIN);
        Self(Some(hasher))
    }

    pub(crate) fn piece(&mut self, headers: &Digest, ident: &Ident, piece: Piece) {
        let Some(hasher) = &mut self.0 else { return };
        let content = match ident {
            Ident::NoContent => [0u8; 56],
            Ident::File(id) => id.bytes(),
            Ident::Unknown => {
                self.0 = None;
                return;
            }
        };
        hasher.update(b"E");
        hasher.update(headers.as_bytes());
        hasher.update([u8::from(matches!(ident, Ident::File(_)))]);
        hasher.update(content);
        hasher.update(piece.from.to_le_bytes());
        hasher.update(piece.to.to_le_bytes());
        hasher.update([u8::from(piece.headers), u8::from(piece.padding)]);
    }

    pub(crate) fn end_of_archive(&mut self) {
        if let Some(hasher) = &mut self.0 {
            hasher.update(b"Z");
        }
    }

    /// The key, and a fresh builder for the next member.
    pub(crate) fn take(&mut self) -> Option<Digest> {
        let done = std::mem::replace(self, Self::new());
        done.0.map(|h| Digest::from_bytes(h.finalize().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ctime_sec: i64) -> FileIdentity {
        FileIdentity {
            dev: 1,
            ino: 2,
            size: 10,
            mtime_sec: 5,
            mtime_nsec: 0,
            ctime_sec,
            ctime_nsec: 0,
        }
    }

    #[test]
    fn recent_or_future_ctimes_are_not_trusted() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            Ident::resolve(10, Some(&id(900)), start),
            Ident::File(id(900))
        );
        assert_eq!(Ident::resolve(10, Some(&id(999)), start), Ident::Unknown);
        assert_eq!(Ident::resolve(10, Some(&id(2_000)), start), Ident::Unknown);
        assert_eq!(Ident::resolve(10, Some(&id(-5)), start), Ident::Unknown);
        // The identity must describe the declared size; no data needs no identity.
        assert_eq!(Ident::resolve(11, Some(&id(900)), start), Ident::Unknown);
        assert_eq!(Ident::resolve(10, None, start), Ident::Unknown);
        assert_eq!(Ident::resolve(0, None, start), Ident::NoContent);
    }

    #[test]
    fn keys_depend_on_every_part() {
        let h = Digest::of(b"headers");
        let whole = Piece {
            from: 0,
            to: 10,
            headers: true,
            padding: true,
        };
        let key = |headers: &Digest, ident: Ident, piece: Piece| {
            let mut k = KeyBuilder::new();
            k.piece(headers, &ident, piece);
            k.take()
        };
        let base = key(&h, Ident::File(id(1)), whole).unwrap();
        assert_eq!(key(&h, Ident::File(id(1)), whole), Some(base));
        assert_ne!(key(&h, Ident::File(id(2)), whole), Some(base));
        assert_ne!(
            key(&Digest::of(b"other"), Ident::File(id(1)), whole),
            Some(base)
        );
        assert_ne!(
            key(&h, Ident::File(id(1)), Piece { to: 9, ..whole }),
            Some(base)
        );
        assert_ne!(
            key(
                &h,
                Ident::File(id(1)),
                Piece {
                    padding: false,
                    ..whole
                }
            ),
            Some(base)
        );
        assert_eq!(key(&h, Ident::Unknown, whole), None);
        let mut k = KeyBuilder::new();
        k.piece(&h, &Ident::File(id(1)), whole);
        k.end_of_archive();
        assert_ne!(k.take(), Some(base));
    }
}
