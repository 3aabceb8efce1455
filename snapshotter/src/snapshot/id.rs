//! Snapshot identities: [`ActiveKey`] for snapshots that are still being written (or read-only
//! views), [`CommittedName`] for immutable committed snapshots, and the two ways of referring to
//! either ([`SnapshotName`] owned, [`SnapshotRef`] borrowed).
//!
//! Keys and names share one namespace (as in containerd): an active key may not equal a committed
//! name. Both follow containerd's identifier shape (`identifiers.Validate`) widened by `:` so that
//! ChainIDs can be names: 1 to 128 ASCII characters, alphanumeric runs joined by single `.`, `_`,
//! `-` or `:`. The `sha256:` prefix is reserved for names that are ChainIDs
//! ([`CommittedName::for_chain`]), so a build step can never take the name of a pulled layer stack.
//!
//! Identities are never used as path components: records and directories on disk are named by a
//! numeric id (see `meta.rs`), so validation is about unambiguous names, not path safety.
//!
//! Not responsible for: whether a snapshot with that identity exists.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{IdKind, Result, SnapshotError};
use crate::digest::{ChainId, Digest};

/// Longest accepted key or name, in bytes.
pub const MAX_ID_LEN: usize = 128;

const CHAIN_PREFIX: &str = "sha256:";

fn validate(kind: IdKind, value: &str) -> Result<()> {
    let refuse = |reason: &'static str| SnapshotError::InvalidId {
        kind,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(refuse("must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(refuse("must be at most 128 characters"));
    }
    let mut previous_was_separator = true;
    for byte in value.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => previous_was_separator = false,
            b'.' | b'_' | b'-' | b':' => {
                if previous_was_separator {
                    return Err(refuse(
                        "separators (`.` `_` `-` `:`) must sit between letters or digits",
                    ));
                }
                previous_was_separator = true;
            }
            _ => {
                return Err(refuse(
                    "only ASCII letters, digits and the separators `.` `_` `-` `:` are allowed",
                ));
            }
        }
    }
    if previous_was_separator {
        return Err(refuse("must end with a letter or digit"));
    }
    Ok(())
}

/// The key of an active snapshot (or of a read-only view), chosen by the caller.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActiveKey(String);

impl ActiveKey {
    /// Validate `value` as an active key.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        validate(IdKind::Key, &value)?;
        if value.starts_with(CHAIN_PREFIX) {
            return Err(SnapshotError::InvalidId {
                kind: IdKind::Key,
                value,
                reason: "the `sha256:` prefix is reserved for ChainID-named committed snapshots",
            });
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name of a committed (immutable) snapshot.
///
/// Snapshots of pulled layer stacks are named by their ChainID ([`CommittedName::for_chain`]), so
/// that two images sharing base layers share the snapshots of those layers.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommittedName(String);

impl CommittedName {
    /// Validate `value` as a committed name. A name starting with `sha256:` must be a full digest.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        validate(IdKind::Name, &value)?;
        if value.starts_with(CHAIN_PREFIX) && value.parse::<Digest>().is_err() {
            return Err(SnapshotError::InvalidId {
                kind: IdKind::Name,
                value,
                reason: "a name starting with `sha256:` must be a ChainID (64 lowercase hex digits)",
            });
        }
        Ok(Self(value))
    }

    /// The name of the snapshot holding the layer stack `chain`: the ChainID itself.
    pub fn for_chain(chain: &ChainId) -> Self {
        Self(chain.to_string())
    }

    /// The ChainID this name stands for, when it is a ChainID name.
    pub fn chain_id(&self) -> Option<ChainId> {
        self.0.parse().ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<ChainId> for CommittedName {
    fn from(chain: ChainId) -> Self {
        Self::for_chain(&chain)
    }
}

macro_rules! id_traits {
    ($name:ident, $label:literal) => {
        impl FromStr for $name {
            type Err = SnapshotError;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, "({:?})"), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_traits!(ActiveKey, "ActiveKey");
id_traits!(CommittedName, "CommittedName");

/// An owned reference to any snapshot: by key while active (or a view), by name once committed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotName {
    Active(ActiveKey),
    Committed(CommittedName),
}

impl SnapshotName {
    /// The key or name as text (the shared namespace).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active(key) => key.as_str(),
            Self::Committed(name) => name.as_str(),
        }
    }

    pub fn as_snapshot_ref(&self) -> SnapshotRef<'_> {
        match self {
            Self::Active(key) => SnapshotRef::Active(key),
            Self::Committed(name) => SnapshotRef::Committed(name),
        }
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_snapshot_ref().fmt(f)
    }
}

impl fmt::Debug for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A borrowed reference to any snapshot, for the verbs that accept both kinds
/// (`stat`, `usage`, `remove`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotRef<'a> {
    Active(&'a ActiveKey),
    Committed(&'a CommittedName),
}

impl SnapshotRef<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active(key) => key.as_str(),
            Self::Committed(name) => name.as_str(),
        }
    }

    pub fn to_name(&self) -> SnapshotName {
        match self {
            Self::Active(key) => SnapshotName::Active((*key).clone()),
            Self::Committed(name) => SnapshotName::Committed((*name).clone()),
        }
    }
}

impl fmt::Display for SnapshotRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Active(key) => write!(f, "`{key}` (active)"),
            Self::Committed(name) => write!(f, "`{name}` (committed)"),
        }
    }
}

impl fmt::Debug for SnapshotRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'a> From<&'a ActiveKey> for SnapshotRef<'a> {
    fn from(key: &'a ActiveKey) -> Self {
        Self::Active(key)
    }
}

impl<'a> From<&'a CommittedName> for SnapshotRef<'a> {
    fn from(name: &'a CommittedName) -> Self {
        Self::Committed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_containerd_shaped_ids() {
        for ok in [
            "a",
            "build-3.step_7",
            "extract-17",
            "A1:b2",
            &"x".repeat(128),
        ] {
            ActiveKey::new(ok).unwrap();
            CommittedName::new(ok).unwrap();
        }
    }

    #[test]
    fn refuses_malformed_ids() {
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "a/b",
            "..",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(ActiveKey::new(bad).is_err(), "{bad:?}");
            assert!(CommittedName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sha256_prefix_is_reserved_for_chain_ids() {
        let chain = ChainId(Digest::of(b"layer"));
        let name = CommittedName::for_chain(&chain);
        assert_eq!(name.chain_id(), Some(chain));
        assert_eq!(CommittedName::new(name.as_str()).unwrap(), name);
        assert!(CommittedName::new("sha256:abc").is_err());
        assert!(ActiveKey::new(name.as_str()).is_err());
        assert_eq!(CommittedName::new("step-1").unwrap().chain_id(), None);
    }

    #[test]
    fn serde_validates() {
        let key: ActiveKey = serde_json::from_str("\"k-1\"").unwrap();
        assert_eq!(key.as_str(), "k-1");
        assert!(serde_json::from_str::<ActiveKey>("\"../x\"").is_err());
        let name = SnapshotName::Committed(CommittedName::new("n").unwrap());
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, r#"{"committed":"n"}"#);
        assert_eq!(serde_json::from_str::<SnapshotName>(&json).unwrap(), name);
    }
}
