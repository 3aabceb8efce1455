//! `RUN` flag values, typed: `--mount` specifications, `--network` and `--security`.
//!
//! Responsible for: BuildKit's `--mount` syntax (one CSV record, read as Go's
//! `encoding/csv` does: a field may be double-quoted, `""` inside is one quote; each
//! field is `key=value` or a bare boolean key; keys are case-insensitive), the options of
//! each mount type with BuildKit's aliases and defaults, BuildKit's errors (with "did you
//! mean" for types, keys and sharing modes), and turning an error into a [`Diagnostic`]
//! that points at the offending field.
//! Not responsible for: deciding what the variables are (the caller passes a lookup to
//! [`Mount::parse_word`]), resolving a relative target against `WORKDIR`, or mounting
//! anything.
//!
//! # Expansion
//!
//! As in BuildKit, the value is split into fields first and then each field's value (not
//! its key) is expanded on its own, like one word (quotes removed, `$VAR`s replaced).
//! The typed layer parses a flag value at parse time only when it contains no `$`
//! ([`RunMount::parsed`] is `None` otherwise); the engine calls [`Mount::parse_word`]
//! with the stage's variables when it runs the step.

use std::fmt;

use serde::Serialize;
use thiserror::Error;

use crate::diagnostic::{Code, Diagnostic};
use crate::expand::{self, ExpandError};
use crate::span::Span;
use crate::suggest;
use crate::word::Word;

/// The mount types, as written in `type=`.
pub const MOUNT_TYPES: &[&str] = &["bind", "cache", "tmpfs", "secret", "ssh"];
/// The sharing modes of a cache mount, as written in `sharing=`.
pub const SHARING_MODES: &[&str] = &["shared", "private", "locked"];
/// Every key a `--mount` field may have (BuildKit's list, for "did you mean").
pub const MOUNT_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Default permissions of a cache mount's directory.
pub const CACHE_MODE: u32 = 0o755;
/// Default permissions of a secret file.
pub const SECRET_MODE: u32 = 0o400;
/// Default permissions of an SSH agent socket.
pub const SSH_MODE: u32 = 0o600;
/// The SSH id used when none is given.
pub const SSH_DEFAULT_ID: &str = "default";

/// The kind of a mount (`type=`; `bind` when absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub const fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }

    fn from_lower(s: &str) -> Option<Self> {
        Some(match s {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => return None,
        })
    }
}

impl fmt::Display for MountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How concurrent builds share a cache mount (`sharing=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum CacheSharing {
    /// Several writers at once (the default).
    #[default]
    Shared,
    /// A new, empty cache when the cache is in use.
    Private,
    /// Waits until the other writer releases the cache.
    Locked,
}

/// One `--mount` value, with BuildKit's defaults applied.
///
/// A `target` of `None` (absent or empty) for `bind`, `cache` and `tmpfs` means the
/// stage's working directory: BuildKit joins a relative target (the empty one included)
/// with `WORKDIR`, and fails the step if the result is `/`. `from` of `None` is the build
/// context for `bind` and an empty directory for `cache`; `source` of `None` is the root
/// of `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Mount {
    /// `type=bind` (the default): a directory of the context or of another stage/image,
    /// read-only unless `rw` (writes are then discarded after the step).
    Bind {
        target: Option<String>,
        source: Option<String>,
        from: Option<String>,
        readwrite: bool,
    },
    /// `type=cache`: a persistent directory shared between builds.
    Cache {
        /// `id=`, by default the target, path-cleaned as written (`.` when absent).
        id: String,
        target: Option<String>,
        source: Option<String>,
        from: Option<String>,
        sharing: CacheSharing,
        /// Permissions of the cache directory ([`CACHE_MODE`] by default).
        mode: u32,
        uid: u32,
        gid: u32,
        readonly: bool,
    },
    /// `type=tmpfs`: an empty in-memory file system.
    Tmpfs {
        target: Option<String>,
        /// Size limit in bytes (`size=`, with `units.RAMInBytes` suffixes); `None` for no
        /// limit.
        size: Option<u64>,
        readonly: bool,
    },
    /// `type=secret`: a secret the caller provides, as a file and/or an env variable.
    Secret {
        /// `id=` or `source=`, by default the target's file name.
        id: String,
        /// The file; by default `/run/secrets/<id's file name>`, `None` only when `env=`
        /// is given without a target (the secret is then only an env variable).
        target: Option<String>,
        /// `env=`: the variable to expose the secret as. `Some("")` asks for BuildKit's
        /// default name.
        env: Option<String>,
        /// `required`: fail when the caller has no such secret (by default the mount is
        /// skipped).
        required: bool,
        /// [`SECRET_MODE`] by default.
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// `type=ssh`: an SSH agent socket the caller forwards.
    Ssh {
        /// [`SSH_DEFAULT_ID`] by default.
        id: String,
        /// `None`: `/run/buildkit/ssh_agent.<n>`, see [`ssh_default_target`].
        target: Option<String>,
        required: bool,
        /// [`SSH_MODE`] by default.
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// Where BuildKit puts the `n`-th (from 0) SSH socket of a step that has no `target=`.
pub fn ssh_default_target(n: usize) -> String {
    format!("/run/buildkit/ssh_agent.{n}")
}

/// Why a `--mount` value is not valid, and which part of the value is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{kind}")]
pub struct MountError {
    pub kind: MountErrorKind,
    /// The offending field as a byte range of the value (`None`: the whole value).
    pub at: Option<Span>,
}

/// The kinds of [`MountError`]; messages follow BuildKit's.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MountErrorKind {
    #[error("empty mount specification")]
    Empty,
    #[error("failed to parse csv mounts: {reason}")]
    Csv { reason: &'static str },
    #[error("invalid field '{field}' must be a key=value pair")]
    NotKeyValue { field: String },
    #[error("unexpected key '{key}' in '{field}'")]
    UnknownKey {
        key: String,
        field: String,
        suggestion: Option<&'static str>,
    },
    #[error("unsupported mount type \"{value}\"")]
    UnknownType {
        value: String,
        suggestion: Option<&'static str>,
    },
    #[error("unsupported sharing value \"{value}\"")]
    UnknownSharing {
        value: String,
        suggestion: Option<&'static str>,
    },
    /// A key the mount type does not take (`size` outside tmpfs, `env` outside secret).
    #[error("unexpected key '{key}' for mount type '{mount_type}'")]
    KeyNotForType { key: String, mount_type: MountType },
    #[error("invalid value for {key}: {value}")]
    InvalidBool { key: String, value: String },
    #[error("invalid value for size: {value}")]
    InvalidSize { value: String },
    /// `mode` (octal), `uid` or `gid` (decimal) that is not a 32-bit unsigned number.
    #[error("invalid value {value} for {key}")]
    InvalidNumber { key: &'static str, value: String },
    #[error("{key} not allowed for \"{mount_type}\" type mounts")]
    FileInfoNotAllowed {
        key: &'static str,
        mount_type: MountType,
    },
    #[error("secret mount should not have a from")]
    SecretFrom,
    #[error("invalid secret mount. one of source, target required")]
    SecretNoId,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    #[error("ssh does not support source")]
    SshSource,
    #[error("{0}")]
    Expand(ExpandError),
}

impl MountErrorKind {
    fn at(self, at: Option<Span>) -> MountError {
        MountError { kind: self, at }
    }

    fn suggestion(&self) -> Option<&'static str> {
        match self {
            MountErrorKind::UnknownKey { suggestion, .. }
            | MountErrorKind::UnknownType { suggestion, .. }
            | MountErrorKind::UnknownSharing { suggestion, .. } => *suggestion,
            _ => None,
        }
    }

    fn help(&self) -> Option<String> {
        if let Some(s) = self.suggestion() {
            return Some(format!("did you mean `{s}`?"));
        }
        Some(match self {
            MountErrorKind::Empty | MountErrorKind::NotKeyValue { .. } => {
                "write `--mount=type=<type>,target=<path>[,<key>=<value>...]`".to_owned()
            }
            MountErrorKind::Csv { .. } => {
                "quote a whole field (`\"target=a,b\"`), and write `\"\"` for a quote inside it"
                    .to_owned()
            }
            MountErrorKind::UnknownKey { .. } => {
                format!("the keys are {}", backticked(&MOUNT_KEYS[..12]))
            }
            MountErrorKind::UnknownType { .. } => {
                format!("the mount types are {}", backticked(MOUNT_TYPES))
            }
            MountErrorKind::UnknownSharing { .. } => {
                format!("the sharing modes are {}", backticked(SHARING_MODES))
            }
            MountErrorKind::KeyNotForType { key, .. } => match key.as_str() {
                "required" => {
                    "`required` is for `type=secret` and `type=ssh`; write `type=` first".to_owned()
                }
                "size" => "`size` is for `type=tmpfs`; write `type=` first".to_owned(),
                "env" => "`env` is for `type=secret`".to_owned(),
                "sharing" => "`sharing` is for `type=cache`".to_owned(),
                _ => return None,
            },
            MountErrorKind::InvalidBool { .. } => "write `true` or `false`".to_owned(),
            MountErrorKind::InvalidSize { .. } => {
                "write bytes, optionally with a unit: `64m`, `1.5g`, `512KiB`".to_owned()
            }
            MountErrorKind::InvalidNumber { key: "mode", .. } => {
                "write the mode in octal, e.g. `0644`".to_owned()
            }
            MountErrorKind::InvalidNumber { .. } => "write a number, e.g. `1000`".to_owned(),
            MountErrorKind::FileInfoNotAllowed { .. } => {
                "`mode`, `uid` and `gid` are for `cache`, `secret` and `ssh` mounts".to_owned()
            }
            MountErrorKind::SecretNoId => "write `id=<secret id>`".to_owned(),
            MountErrorKind::SecretSourceAndId | MountErrorKind::SshSource => {
                "write only `id=`".to_owned()
            }
            _ => return None,
        })
    }
}

impl MountError {
    /// A diagnostic for the `--mount` flag value `word`, pointing at the offending field
    /// when its place in the source is known (the value was written without quotes
    /// around it), else at the whole value.
    pub fn to_diagnostic(&self, word: &Word) -> Diagnostic {
        let whole = word.span();
        let span = match self.at {
            Some(at) if word.raw().len() == whole.len() && at.end <= whole.len() => {
                Span::new(whole.start + at.start, whole.start + at.end)
            }
            _ => whole,
        };
        let label = if span == whole {
            "in this mount"
        } else {
            "here"
        };
        Diagnostic::error(
            Code::InvalidMount,
            span,
            format!("invalid `--mount`: {}", self.kind),
        )
        .with_label(label)
        .with_help_opt(self.kind.help())
    }
}

fn backticked(names: &[&str]) -> String {
    let all: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    all.join(", ")
}

/// One CSV field: its text (quotes removed) and where it is in the value.
struct Field {
    text: String,
    at: Span,
    quoted: bool,
}

/// One CSV record as Go's `encoding/csv` reads it (comma separator, no lazy quotes, no
/// leading-space trimming).
fn csv_fields(value: &str) -> Result<Vec<Field>, MountError> {
    let mut fields = Vec::new();
    let bytes = value.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        if bytes.get(i) == Some(&b'"') {
            let mut text = String::new();
            let mut j = i + 1;
            let mut closed = false;
            while j < bytes.len() {
                let rest = &value[j..];
                let c = rest.chars().next().unwrap_or('"');
                if c == '"' {
                    if bytes.get(j + 1) == Some(&b'"') {
                        text.push('"');
                        j += 2;
                        continue;
                    }
                    closed = true;
                    j += 1;
                    break;
                }
                text.push(c);
                j += c.len_utf8();
            }
            if !closed {
                return Err(MountErrorKind::Csv {
                    reason: "extraneous or missing \" in quoted-field",
                }
                .at(Some(Span::new(start, value.len()))));
            }
            if j < bytes.len() && bytes[j] != b',' {
                let end = value[j..].find(',').map_or(value.len(), |e| j + e);
                return Err(MountErrorKind::Csv {
                    reason: "extraneous or missing \" in quoted-field",
                }
                .at(Some(Span::new(start, end))));
            }
            fields.push(Field {
                text,
                at: Span::new(start, j),
                quoted: true,
            });
            i = j;
        } else {
            let end = value[i..].find(',').map_or(value.len(), |e| i + e);
            let text = &value[i..end];
            if text.contains('"') {
                return Err(MountErrorKind::Csv {
                    reason: "bare \" in non-quoted-field",
                }
                .at(Some(Span::new(start, end))));
            }
            fields.push(Field {
                text: text.to_owned(),
                at: Span::new(start, end),
                quoted: false,
            });
            i = end;
        }
        if i >= bytes.len() {
            return Ok(fields);
        }
        // At a comma.
        i += 1;
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, radix, 32)`: digits only, no sign or prefix.
fn parse_u32(s: &str, radix: u32) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(s, radix).ok()
}

/// `units.RAMInBytes` of `github.com/docker/go-units`: a decimal number, optionally
/// followed (after one optional space) by `b`, or by `k`, `m`, `g`, `t` or `p` with an
/// optional `b` or `ib` (case-insensitive, all powers of 1024).
pub fn ram_in_bytes(s: &str) -> Option<u64> {
    let sep = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')?;
    let (num, suffix) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    // Go's ParseFloat; Rust's parser also takes `inf`/`nan`, which cannot end in a digit.
    if num.is_empty() || num.contains(['i', 'I', 'n', 'N']) {
        return None;
    }
    let size: f64 = num.parse().ok()?;
    if size < 0.0 {
        return None;
    }
    let suffix = suffix.to_ascii_lowercase();
    let mul: f64 = match suffix.as_bytes() {
        [] | [b'b'] => 1.0,
        [u, rest @ ..] => {
            let power = match u {
                b'k' => 1,
                b'm' => 2,
                b'g' => 3,
                b't' => 4,
                b'p' => 5,
                _ => return None,
            };
            if !matches!(rest, [] | [b'b'] | [b'i', b'b']) {
                return None;
            }
            1024f64.powi(power)
        }
    };
    let bytes = size * mul;
    // Go converts with int64(); beyond its range the result is meaningless, so refuse.
    (bytes < 2f64.powi(63)).then_some(bytes as u64)
}

/// Go's `path.Clean`.
fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `path.Base`.
fn base_name(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".to_owned();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned()
}

/// A value with the place of its field.
type At<T> = Option<(T, Span)>;

impl Mount {
    /// Parses a `--mount` value whose field values are taken as they are (already
    /// expanded, quotes removed).
    pub fn parse(value: &str) -> Result<Mount, MountError> {
        Self::parse_with(value, &|v| Ok(v.to_owned()))
    }

    /// Parses the `--mount` flag value `word` as BuildKit does when it runs the step:
    /// each field's value is expanded like one word with `lookup` (the stage's `ENV` and
    /// `ARG` values).
    pub fn parse_word(
        word: &Word,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Mount, MountError> {
        let escape = word.escape();
        Self::parse_with(word.raw(), &|v| expand::expand(v, escape, lookup))
    }

    /// Parses `value` with `expand` applied to each field's value (never to keys or to
    /// bare boolean keys).
    pub fn parse_with(
        value: &str,
        expand: &dyn Fn(&str) -> Result<String, ExpandError>,
    ) -> Result<Mount, MountError> {
        if value.is_empty() {
            return Err(MountErrorKind::Empty.at(None));
        }
        let mut ty = MountType::Bind;
        let mut from: At<String> = None;
        let mut source: At<String> = None;
        let mut target: Option<String> = None;
        let mut readonly: Option<bool> = None;
        let mut required = false;
        let mut size: Option<u64> = None;
        let mut id: At<String> = None;
        let mut sharing: At<CacheSharing> = None;
        let mut mode: At<u32> = None;
        let mut uid: At<u32> = None;
        let mut gid: At<u32> = None;
        let mut env: At<String> = None;

        for field in csv_fields(value)? {
            let at = Some(field.at);
            let Some((key, raw_value)) = field.text.split_once('=') else {
                match field.text.to_lowercase().as_str() {
                    "readonly" | "ro" => readonly = Some(true),
                    "readwrite" | "rw" => readonly = Some(false),
                    "required" if matches!(ty, MountType::Secret | MountType::Ssh) => {
                        required = true;
                    }
                    "required" => {
                        return Err(MountErrorKind::KeyNotForType {
                            key: "required".to_owned(),
                            mount_type: ty,
                        }
                        .at(at));
                    }
                    _ => return Err(MountErrorKind::NotKeyValue { field: field.text }.at(at)),
                }
                continue;
            };
            let key = key.to_lowercase();
            // The value alone, when the field was written without quotes.
            let value_at = if field.quoted {
                field.at
            } else {
                Span::new(field.at.start + key.len() + 1, field.at.end)
            };
            let v = expand(raw_value).map_err(|e| MountErrorKind::Expand(e).at(at))?;
            let bool_value = |v: &str| {
                parse_bool(v).ok_or_else(|| {
                    MountErrorKind::InvalidBool {
                        key: key.clone(),
                        value: v.to_owned(),
                    }
                    .at(Some(value_at))
                })
            };
            let number = |key: &'static str, radix: u32| {
                parse_u32(&v, radix).map(|n| (n, field.at)).ok_or_else(|| {
                    MountErrorKind::InvalidNumber {
                        key,
                        value: v.clone(),
                    }
                    .at(Some(value_at))
                })
            };
            match key.as_str() {
                "type" => {
                    ty = MountType::from_lower(&v.to_lowercase()).ok_or_else(|| {
                        MountErrorKind::UnknownType {
                            suggestion: suggest::closest(&v, MOUNT_TYPES.iter().copied()),
                            value: v.clone(),
                        }
                        .at(Some(value_at))
                    })?;
                }
                "from" => from = Some((v, field.at)),
                "source" | "src" => source = Some((v, field.at)),
                "target" | "dst" | "destination" => target = Some(v),
                "readonly" | "ro" => readonly = Some(bool_value(&v)?),
                "readwrite" | "rw" => readonly = Some(!bool_value(&v)?),
                "required" if matches!(ty, MountType::Secret | MountType::Ssh) => {
                    required = bool_value(&v)?;
                }
                "size" if ty == MountType::Tmpfs => {
                    size = Some(ram_in_bytes(&v).ok_or_else(|| {
                        MountErrorKind::InvalidSize { value: v.clone() }.at(Some(value_at))
                    })?);
                }
                "required" | "size" => {
                    return Err(MountErrorKind::KeyNotForType {
                        key,
                        mount_type: ty,
                    }
                    .at(at));
                }
                "id" => id = Some((v, field.at)),
                "sharing" => {
                    let mode = match v.to_lowercase().as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        _ => {
                            return Err(MountErrorKind::UnknownSharing {
                                suggestion: suggest::closest(&v, SHARING_MODES.iter().copied()),
                                value: v,
                            }
                            .at(Some(value_at)));
                        }
                    };
                    sharing = Some((mode, field.at));
                }
                "mode" => mode = Some(number("mode", 8)?),
                "uid" => uid = Some(number("uid", 10)?),
                "gid" => gid = Some(number("gid", 10)?),
                "env" => env = Some((v, field.at)),
                _ => {
                    return Err(MountErrorKind::UnknownKey {
                        suggestion: suggest::closest(&key, MOUNT_KEYS.iter().copied()),
                        key,
                        field: field.text,
                    }
                    .at(at));
                }
            }
        }

        // Checks that need the whole value, in BuildKit's order.
        if !matches!(ty, MountType::Secret | MountType::Ssh | MountType::Cache) {
            for (key, set) in [("mode", &mode), ("uid", &uid), ("gid", &gid)] {
                if let Some((_, at)) = set {
                    return Err(MountErrorKind::FileInfoNotAllowed {
                        key,
                        mount_type: ty,
                    }
                    .at(Some(*at)));
                }
            }
        }
        let nonempty = |v: At<String>| v.filter(|(s, _)| !s.is_empty());
        let from = nonempty(from);
        let source = nonempty(source);
        let id = nonempty(id);
        let target = target.filter(|t| !t.is_empty());
        if let Some((_, at)) = from
            && ty == MountType::Secret
        {
            return Err(MountErrorKind::SecretFrom.at(Some(at)));
        }
        if let Some((_, at)) = sharing
            && ty != MountType::Cache
        {
            return Err(MountErrorKind::KeyNotForType {
                key: "sharing".to_owned(),
                mount_type: ty,
            }
            .at(Some(at)));
        }
        if let Some((_, at)) = env
            && ty != MountType::Secret
        {
            return Err(MountErrorKind::KeyNotForType {
                key: "env".to_owned(),
                mount_type: ty,
            }
            .at(Some(at)));
        }
        let value_of = |v: At<String>| v.map(|(s, _)| s);
        let number_of = |v: At<u32>, default: u32| v.map_or(default, |(n, _)| n);
        Ok(match ty {
            MountType::Bind => Mount::Bind {
                target,
                source: value_of(source),
                from: value_of(from),
                readwrite: readonly == Some(false),
            },
            MountType::Cache => Mount::Cache {
                id: value_of(id).unwrap_or_else(|| clean_path(target.as_deref().unwrap_or(""))),
                target,
                source: value_of(source),
                from: value_of(from),
                sharing: sharing.map(|(s, _)| s).unwrap_or_default(),
                mode: number_of(mode, CACHE_MODE),
                uid: number_of(uid, 0),
                gid: number_of(gid, 0),
                readonly: readonly == Some(true),
            },
            MountType::Tmpfs => Mount::Tmpfs {
                target,
                size: size.filter(|s| *s > 0),
                readonly: readonly == Some(true),
            },
            MountType::Secret => {
                if let (Some((_, at)), Some(_)) = (&source, &id) {
                    return Err(MountErrorKind::SecretSourceAndId.at(Some(*at)));
                }
                let id = match (value_of(id).or(value_of(source)), &target) {
                    (Some(id), _) => id,
                    (None, Some(target)) => base_name(target),
                    (None, None) => return Err(MountErrorKind::SecretNoId.at(None)),
                };
                let env = value_of(env);
                let target = match target {
                    Some(t) => Some(t),
                    None if env.is_some() => None,
                    None => Some(format!("/run/secrets/{}", base_name(&id))),
                };
                Mount::Secret {
                    id,
                    target,
                    env,
                    required,
                    mode: number_of(mode, SECRET_MODE),
                    uid: number_of(uid, 0),
                    gid: number_of(gid, 0),
                }
            }
            MountType::Ssh => {
                if let Some((_, at)) = source {
                    return Err(MountErrorKind::SshSource.at(Some(at)));
                }
                Mount::Ssh {
                    id: value_of(id).unwrap_or_else(|| SSH_DEFAULT_ID.to_owned()),
                    target,
                    required,
                    mode: number_of(mode, SSH_MODE),
                    uid: number_of(uid, 0),
                    gid: number_of(gid, 0),
                }
            }
        })
    }

    pub fn mount_type(&self) -> MountType {
        match self {
            Mount::Bind { .. } => MountType::Bind,
            Mount::Cache { .. } => MountType::Cache,
            Mount::Tmpfs { .. } => MountType::Tmpfs,
            Mount::Secret { .. } => MountType::Secret,
            Mount::Ssh { .. } => MountType::Ssh,
        }
    }

    /// The stage or image the mount reads from (`from=`), for bind and cache mounts.
    pub fn from(&self) -> Option<&str> {
        match self {
            Mount::Bind { from, .. } | Mount::Cache { from, .. } => from.as_deref(),
            _ => None,
        }
    }
}

/// `RUN --network=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

pub const NETWORK_MODES: &[&str] = &["default", "none", "host"];

/// `RUN --security=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

pub const SECURITY_MODES: &[&str] = &["sandbox", "insecure"];

/// A `--network` or `--security` value that is not one of the modes.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RunFlagError {
    #[error("network mode \"{value}\" not supported")]
    UnknownNetwork {
        value: String,
        suggestion: Option<&'static str>,
    },
    #[error("security mode \"{value}\" not supported")]
    UnknownSecurity {
        value: String,
        suggestion: Option<&'static str>,
    },
}

impl RunFlagError {
    pub fn to_diagnostic(&self, word: &Word) -> Diagnostic {
        let (suggestion, all) = match self {
            RunFlagError::UnknownNetwork { suggestion, .. } => (suggestion, NETWORK_MODES),
            RunFlagError::UnknownSecurity { suggestion, .. } => (suggestion, SECURITY_MODES),
        };
        let help = match suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("write one of {}", backticked(all)),
        };
        Diagnostic::error(Code::InvalidFlagValue, word.span(), self.to_string())
            .with_label("not a supported mode")
            .with_help(help)
    }
}

impl NetworkMode {
    /// BuildKit's modes, case-sensitive.
    pub fn parse(value: &str) -> Result<Self, RunFlagError> {
        Ok(match value {
            "default" => NetworkMode::Default,
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            _ => {
                return Err(RunFlagError::UnknownNetwork {
                    value: value.to_owned(),
                    suggestion: suggest::closest(value, NETWORK_MODES.iter().copied()),
                });
            }
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Default => "default",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }
}

impl SecurityMode {
    /// BuildKit's modes, case-sensitive.
    pub fn parse(value: &str) -> Result<Self, RunFlagError> {
        Ok(match value {
            "sandbox" => SecurityMode::Sandbox,
            "insecure" => SecurityMode::Insecure,
            _ => {
                return Err(RunFlagError::UnknownSecurity {
                    value: value.to_owned(),
                    suggestion: suggest::closest(value, SECURITY_MODES.iter().copied()),
                });
            }
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            SecurityMode::Sandbox => "sandbox",
            SecurityMode::Insecure => "insecure",
        }
    }
}

/// A typed `RUN` flag value: the value as written, and its meaning when it could be
/// read at parse time (it contains no `$`; otherwise the engine parses it after
/// expansion, see [`Mount::parse_word`], [`NetworkMode::parse`], [`SecurityMode::parse`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TypedFlag<T> {
    pub raw: Word,
    pub parsed: Option<T>,
}

/// One `RUN --mount`.
pub type RunMount = TypedFlag<Mount>;

/// Whether a flag value can be read without the stage's variables.
pub(crate) fn is_static(word: &Word) -> bool {
    !word.raw().contains('$')
}

/// Expands a `$`-free word as BuildKit would (quotes and escapes removed).
pub(crate) fn static_value(word: &Word) -> Result<String, ExpandError> {
    expand::expand(word.raw(), word.escape(), &|_| None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: &str) -> Mount {
        Mount::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    fn err(value: &str) -> MountError {
        Mount::parse(value).expect_err(value)
    }

    /// The error's message and the text of the field it points at.
    fn err_at(value: &str) -> (String, &str) {
        let e = err(value);
        let at = e.at.map_or("", |s| &value[s.start..s.end]);
        (e.to_string(), at)
    }

    #[test]
    fn bind_defaults_aliases_and_options() {
        let plain = Mount::Bind {
            target: Some("/src".into()),
            source: None,
            from: None,
            readwrite: false,
        };
        assert_eq!(ok("target=/src"), plain);
        assert_eq!(ok("type=bind,target=/src"), plain);
        assert_eq!(ok("TYPE=BIND,Dst=/src"), plain);
        assert_eq!(ok("destination=/src,ro"), plain);
        assert_eq!(ok("target=/src,readonly=true,source="), plain);
        assert_eq!(
            ok("type=bind,target=.,src=hack/x.sh,from=build,rw"),
            Mount::Bind {
                target: Some(".".into()),
                source: Some("hack/x.sh".into()),
                from: Some("build".into()),
                readwrite: true,
            }
        );
        for rw in [
            "readwrite",
            "rw=true",
            "readwrite=1",
            "ro=false",
            "readonly=F",
        ] {
            assert!(
                matches!(
                    ok(&format!("target=/a,{rw}")),
                    Mount::Bind {
                        readwrite: true,
                        ..
                    }
                ),
                "{rw}"
            );
        }
        // No target: the working directory (BuildKit joins it with WORKDIR).
        assert_eq!(
            ok("from=binaries"),
            Mount::Bind {
                target: None,
                source: None,
                from: Some("binaries".into()),
                readwrite: false,
            }
        );
        assert_eq!(ok("from=binaries").from(), Some("binaries"));
        assert_eq!(ok("from=binaries").mount_type(), MountType::Bind);
    }

    #[test]
    fn cache_defaults_and_options() {
        assert_eq!(
            ok("type=cache,target=/root/.cache/"),
            Mount::Cache {
                id: "/root/.cache".into(),
                target: Some("/root/.cache/".into()),
                source: None,
                from: None,
                sharing: CacheSharing::Shared,
                mode: 0o755,
                uid: 0,
                gid: 0,
                readonly: false,
            }
        );
        assert_eq!(
            ok("type=cache,id=go,target=/go/pkg/mod,source=sub,from=base,\
                sharing=LOCKED,mode=0700,uid=1000,gid=100,ro"),
            Mount::Cache {
                id: "go".into(),
                target: Some("/go/pkg/mod".into()),
                source: Some("sub".into()),
                from: Some("base".into()),
                sharing: CacheSharing::Locked,
                mode: 0o700,
                uid: 1000,
                gid: 100,
                readonly: true,
            }
        );
        let sharing = |v: &str| match ok(&format!("type=cache,target=/c,sharing={v}")) {
            Mount::Cache { sharing, .. } => sharing,
            m => panic!("{m:?}"),
        };
        assert_eq!(sharing("shared"), CacheSharing::Shared);
        assert_eq!(sharing("private"), CacheSharing::Private);
        assert_eq!(sharing("Locked"), CacheSharing::Locked);
        // The default id is the target, cleaned as written.
        let id = |v: &str| match ok(v) {
            Mount::Cache { id, .. } => id,
            m => panic!("{m:?}"),
        };
        assert_eq!(id("type=cache,target=./.git"), ".git");
        assert_eq!(id("type=cache,target=/a/../b//c/."), "/b/c");
        assert_eq!(id("type=cache"), ".");
        assert_eq!(id("type=cache,target=/x,id="), "/x");
    }

    #[test]
    fn tmpfs_and_sizes() {
        assert_eq!(
            ok("type=tmpfs,target=/tmp"),
            Mount::Tmpfs {
                target: Some("/tmp".into()),
                size: None,
                readonly: false,
            }
        );
        assert_eq!(
            ok("type=tmpfs,dst=/tmp,size=64m,ro"),
            Mount::Tmpfs {
                target: Some("/tmp".into()),
                size: Some(64 << 20),
                readonly: true,
            }
        );
        let cases = [
            ("0", None),
            ("1024", Some(1024)),
            ("1 ", Some(1)),
            ("10b", Some(10)),
            ("10B", Some(10)),
            ("1k", Some(1024)),
            ("1KB", Some(1024)),
            ("1KiB", Some(1024)),
            ("1 MiB", Some(1 << 20)),
            ("1.5g", Some(3 << 29)),
            ("2t", Some(2 << 40)),
            ("1p", Some(1 << 50)),
        ];
        for (size, bytes) in cases {
            let m = ok(&format!("type=tmpfs,target=/t,size={size}"));
            assert!(
                matches!(m, Mount::Tmpfs { size, .. } if size == bytes),
                "{size}"
            );
        }
        for bad in [
            "", "m", "-1", "1x", "1kk", "1kbb", "1ki", "1  ", "1mB2", "inf", "1e400",
        ] {
            assert_eq!(ram_in_bytes(bad), None, "{bad}");
        }
        assert_eq!(
            err_at("type=tmpfs,target=/t,size=lots"),
            ("invalid value for size: lots".into(), "lots")
        );
    }

    #[test]
    fn secret_defaults_and_options() {
        assert_eq!(
            ok("type=secret,id=npm"),
            Mount::Secret {
                id: "npm".into(),
                target: Some("/run/secrets/npm".into()),
                env: None,
                required: false,
                mode: 0o400,
                uid: 0,
                gid: 0,
            }
        );
        assert_eq!(
            ok("type=secret,target=/root/.aws/credentials,required,mode=0440,uid=1,gid=2"),
            Mount::Secret {
                id: "credentials".into(),
                target: Some("/root/.aws/credentials".into()),
                env: None,
                required: true,
                mode: 0o440,
                uid: 1,
                gid: 2,
            }
        );
        // `source` is another name for the id; the default target uses its file name.
        assert_eq!(
            ok("type=secret,src=team/token,required=false"),
            Mount::Secret {
                id: "team/token".into(),
                target: Some("/run/secrets/token".into()),
                env: None,
                required: false,
                mode: 0o400,
                uid: 0,
                gid: 0,
            }
        );
        // With `env=` and no target, the secret is only a variable.
        assert_eq!(
            ok("type=secret,id=aws,env=AWS_KEY,required=true"),
            Mount::Secret {
                id: "aws".into(),
                target: None,
                env: Some("AWS_KEY".into()),
                required: true,
                mode: 0o400,
                uid: 0,
                gid: 0,
            }
        );
        assert!(matches!(
            ok("type=secret,id=a,env=A,target=/a"),
            Mount::Secret { target: Some(t), env: Some(_), .. } if t == "/a"
        ));
    }

    #[test]
    fn ssh_defaults_and_options() {
        assert_eq!(
            ok("type=ssh"),
            Mount::Ssh {
                id: "default".into(),
                target: None,
                required: false,
                mode: 0o600,
                uid: 0,
                gid: 0,
            }
        );
        assert_eq!(
            ok("type=ssh,id=github,target=/run/ssh.sock,required,mode=0666,uid=10,gid=20"),
            Mount::Ssh {
                id: "github".into(),
                target: Some("/run/ssh.sock".into()),
                required: true,
                mode: 0o666,
                uid: 10,
                gid: 20,
            }
        );
        assert_eq!(ssh_default_target(0), "/run/buildkit/ssh_agent.0");
    }

    #[test]
    fn csv_quoting() {
        assert!(matches!(
            ok(r#"type=secret,"id=a,b""#),
            Mount::Secret { id, .. } if id == "a,b"
        ));
        assert!(matches!(
            ok(r#"type=bind,"target=/a ""b""""#),
            Mount::Bind { target: Some(t), .. } if t == r#"/a "b""#
        ));
        assert_eq!(
            err_at(r#"type=bind,target=/a"b"#),
            (
                "failed to parse csv mounts: bare \" in non-quoted-field".into(),
                r#"target=/a"b"#
            )
        );
        assert_eq!(
            err_at(r#""target=/a"x,ro"#),
            (
                "failed to parse csv mounts: extraneous or missing \" in quoted-field".into(),
                r#""target=/a"x"#
            )
        );
        assert_eq!(
            err_at(r#"ro,"target=/a"#),
            (
                "failed to parse csv mounts: extraneous or missing \" in quoted-field".into(),
                r#""target=/a"#
            )
        );
        // Keys are not trimmed, as in BuildKit.
        assert_eq!(
            err_at("type=cache, target=/a"),
            (
                "unexpected key ' target' in ' target=/a'".into(),
                " target=/a"
            )
        );
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "empty mount specification", ""),
            (
                "type=cache,target",
                "invalid field 'target' must be a key=value pair",
                "target",
            ),
            (
                "type=volume,target=/a",
                "unsupported mount type \"volume\"",
                "volume",
            ),
            (
                "type=cache,targt=/a",
                "unexpected key 'targt' in 'targt=/a'",
                "targt=/a",
            ),
            (
                "type=cache,target=/a,sharing=all",
                "unsupported sharing value \"all\"",
                "all",
            ),
            (
                "type=cache,target=/a,sharing=",
                "unsupported sharing value \"\"",
                "",
            ),
            ("target=/a,ro=yes", "invalid value for ro: yes", "yes"),
            ("target=/a,rw=2", "invalid value for rw: 2", "2"),
            (
                "type=secret,id=a,required=maybe",
                "invalid value for required: maybe",
                "maybe",
            ),
            (
                "type=cache,target=/a,mode=0789",
                "invalid value 0789 for mode",
                "0789",
            ),
            (
                "type=cache,target=/a,mode=+644",
                "invalid value +644 for mode",
                "+644",
            ),
            (
                "type=cache,target=/a,uid=-1",
                "invalid value -1 for uid",
                "-1",
            ),
            (
                "type=cache,target=/a,gid=4294967296",
                "invalid value 4294967296 for gid",
                "4294967296",
            ),
            (
                "type=bind,target=/a,mode=0644",
                "mode not allowed for \"bind\" type mounts",
                "mode=0644",
            ),
            (
                "type=tmpfs,target=/a,uid=1",
                "uid not allowed for \"tmpfs\" type mounts",
                "uid=1",
            ),
            (
                "type=tmpfs,target=/a,gid=1",
                "gid not allowed for \"tmpfs\" type mounts",
                "gid=1",
            ),
            (
                "type=cache,target=/a,size=1m",
                "unexpected key 'size' for mount type 'cache'",
                "size=1m",
            ),
            (
                "size=1m,type=tmpfs,target=/a",
                "unexpected key 'size' for mount type 'bind'",
                "size=1m",
            ),
            (
                "type=cache,target=/a,required",
                "unexpected key 'required' for mount type 'cache'",
                "required",
            ),
            (
                "type=bind,target=/a,required=true",
                "unexpected key 'required' for mount type 'bind'",
                "required=true",
            ),
            (
                "type=cache,target=/a,env=X",
                "unexpected key 'env' for mount type 'cache'",
                "env=X",
            ),
            (
                "type=tmpfs,target=/a,sharing=locked",
                "unexpected key 'sharing' for mount type 'tmpfs'",
                "sharing=locked",
            ),
            (
                "type=secret,id=a,from=x",
                "secret mount should not have a from",
                "from=x",
            ),
            (
                "type=secret,required",
                "invalid secret mount. one of source, target required",
                "",
            ),
            (
                "type=secret,id=a,source=b",
                "both source and id can't be set",
                "source=b",
            ),
            (
                "type=ssh,source=x",
                "ssh does not support source",
                "source=x",
            ),
        ];
        for (value, message, at) in cases {
            assert_eq!(err_at(value), ((*message).to_owned(), *at), "{value}");
        }
    }

    #[test]
    fn suggestions() {
        let e = err("type=cahce,target=/a");
        assert_eq!(e.kind.suggestion(), Some("cache"));
        let e = err("type=cache,target=/a,sharing=lockd");
        assert_eq!(e.kind.suggestion(), Some("locked"));
        let e = err("type=cache,traget=/a");
        assert_eq!(e.kind.suggestion(), Some("target"));
        assert_eq!(e.kind.help().as_deref(), Some("did you mean `target`?"));
        assert_eq!(
            NetworkMode::parse("hots"),
            Err(RunFlagError::UnknownNetwork {
                value: "hots".into(),
                suggestion: Some("host")
            })
        );
        assert_eq!(
            SecurityMode::parse("insecur").unwrap_err().to_string(),
            "security mode \"insecur\" not supported"
        );
    }

    #[test]
    fn network_and_security() {
        assert_eq!(NetworkMode::parse("default"), Ok(NetworkMode::Default));
        assert_eq!(NetworkMode::parse("none"), Ok(NetworkMode::None));
        assert_eq!(NetworkMode::parse("host"), Ok(NetworkMode::Host));
        assert!(NetworkMode::parse("Host").is_err());
        assert_eq!(SecurityMode::parse("sandbox"), Ok(SecurityMode::Sandbox));
        assert_eq!(SecurityMode::parse("insecure"), Ok(SecurityMode::Insecure));
        for m in [NetworkMode::Default, NetworkMode::None, NetworkMode::Host] {
            assert_eq!(NetworkMode::parse(m.as_str()), Ok(m));
        }
        for m in [SecurityMode::Sandbox, SecurityMode::Insecure] {
            assert_eq!(SecurityMode::parse(m.as_str()), Ok(m));
        }
    }

    #[test]
    fn expansion_per_field() {
        let lookup = |n: &str| match n {
            "ID" => Some("token".to_owned()),
            "T" => Some("/a,b".to_owned()),
            _ => None,
        };
        let word = Word::new("type=secret,id=${ID}-x,target=$T", Span::new(0, 0), '\\');
        assert_eq!(
            Mount::parse_word(&word, &lookup).unwrap(),
            Mount::Secret {
                id: "token-x".into(),
                // Expanded after splitting: the comma stays in the value.
                target: Some("/a,b".into()),
                env: None,
                required: false,
                mode: 0o400,
                uid: 0,
                gid: 0,
            }
        );
        // Quotes and escapes in a value are removed like in any word.
        let word = Word::new(r"target='/a b',from=x\ y", Span::new(0, 0), '\\');
        assert_eq!(
            Mount::parse_word(&word, &|_| None).unwrap(),
            Mount::Bind {
                target: Some("/a b".into()),
                source: None,
                from: Some("x y".into()),
                readwrite: false,
            }
        );
        let word = Word::new("target=${X:?unset}", Span::new(0, 0), '\\');
        let e = Mount::parse_word(&word, &|_| None).unwrap_err();
        assert!(matches!(e.kind, MountErrorKind::Expand(_)), "{e:?}");
        assert_eq!(e.at, Some(Span::new(0, 18)));
    }

    #[test]
    fn path_helpers() {
        for (p, clean) in [
            ("", "."),
            ("/", "/"),
            ("a/b/../c", "a/c"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/..", "."),
            ("./x/", "x"),
        ] {
            assert_eq!(clean_path(p), clean, "{p}");
        }
        for (p, base) in [("", "."), ("/", "/"), ("/a/b/", "b"), ("c", "c")] {
            assert_eq!(base_name(p), base, "{p}");
        }
    }
}
