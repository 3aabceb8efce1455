//! Image references, parsed and normalized as Docker does (`distribution/reference`):
//! `busybox` → `docker.io/library/busybox:latest`, `localhost:5000/app` → `localhost:5000/app:latest`.
//!
//! Grammar (simplified from distribution's `reference/regexp.go`):
//! `[domain/]path[:tag][@sha256:hex]`, where the first component is a domain only if it contains
//! `.` or `:` or is `localhost`; path components are `[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*`; a tag is
//! `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.

use std::fmt;
use std::str::FromStr;

use snapshotter::Digest;

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: empty reference")]
    Empty,
    #[error("invalid reference format: repository name `{0}` must be lowercase")]
    Uppercase(String),
    #[error("invalid reference format: `{reference}`: {reason}")]
    Invalid {
        reference: String,
        reason: &'static str,
    },
    #[error("invalid reference format: `{reference}`: {source}")]
    Digest {
        reference: String,
        #[source]
        source: snapshotter::DigestError,
    },
}

/// A normalized image reference. Without tag or digest, the tag is `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parse and normalize. A bare name gets the tag `latest`.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let mut r = Self::parse_name_only(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(r)
    }

    fn parse_name_only(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let invalid = |reason| ReferenceError::Invalid {
            reference: s.to_owned(),
            reason,
        };
        let (rest, digest) = match s.split_once('@') {
            Some((name, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|source| ReferenceError::Digest {
                        reference: s.to_owned(),
                        source,
                    })?;
                (name, Some(digest))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(invalid)?;
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), remainder.to_owned())
            }
            _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
        };
        let domain = if domain == LEGACY_DEFAULT_DOMAIN {
            DEFAULT_DOMAIN.to_owned()
        } else {
            domain
        };
        validate_domain(&domain).map_err(invalid)?;
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(name.to_owned()));
        }
        validate_path(&path).map_err(invalid)?;
        if domain.len() + 1 + path.len() > 255 {
            return Err(invalid(
                "repository name must not be more than 255 characters",
            ));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path
        };
        Ok(Self {
            domain,
            path,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The registry host (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `domain/path`, fully qualified.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker shows it: `busybox`, `user/app`, `localhost:5000/app`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_REPO_PREFIX)
                .unwrap_or(&self.path)
                .to_owned()
        } else {
            self.repository()
        }
    }

    /// The familiar form with tag/digest: `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        push_tag_digest(&mut s, self.tag.as_deref(), self.digest.as_ref());
        s
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        validate_tag(tag).map_err(|reason| ReferenceError::Invalid {
            reference: tag.to_owned(),
            reason,
        })?;
        Ok(Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to a digest, without a tag.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }
}

fn push_tag_digest(s: &mut String, tag: Option<&str>, digest: Option<&Digest>) {
    if let Some(t) = tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = digest {
        s.push('@');
        s.push_str(&d.to_string());
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.repository();
        push_tag_digest(&mut s, self.tag.as_deref(), self.digest.as_ref());
        f.write_str(&s)
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn validate_tag(tag: &str) -> Result<(), &'static str> {
    let mut chars = tag.chars();
    let ok_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_first
        || tag.len() > 128
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(
            "a tag must be 1-128 characters of [A-Za-z0-9_.-], not starting with `.` or `-`",
        );
    }
    Ok(())
}

fn validate_domain(domain: &str) -> Result<(), &'static str> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (domain, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the registry port must be a number");
    }
    let host_ok = if host.starts_with('[') && host.ends_with(']') {
        host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    };
    if host_ok {
        Ok(())
    } else {
        Err("invalid registry host")
    }
}

fn validate_path(path: &str) -> Result<(), &'static str> {
    const MSG: &str = "repository path components must be lowercase letters and digits separated by `.`, `_`, `__` or `-`";
    for component in path.split('/') {
        let bytes = component.as_bytes();
        if bytes.is_empty()
            || !bytes[0].is_ascii_alphanumeric()
            || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
        {
            return Err(MSG);
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_lowercase() || b.is_ascii_digit() {
                i += 1;
                continue;
            }
            // A separator: `.`, `_`, `__`, or a run of `-`, each between alphanumerics.
            let start = i;
            match b {
                b'.' => i += 1,
                b'_' => {
                    i += if bytes.get(i + 1) == Some(&b'_') {
                        2
                    } else {
                        1
                    }
                }
                b'-' => {
                    while bytes.get(i) == Some(&b'-') {
                        i += 1;
                    }
                }
                _ => return Err(MSG),
            }
            if start == 0 || !bytes.get(i).is_some_and(u8::is_ascii_alphanumeric) {
                return Err(MSG);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
        assert_eq!(norm("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(norm("quay.io/org/app:1.0-rc.1"), "quay.io/org/app:1.0-rc.1");
        assert_eq!(norm("a__b/c-d.e_f"), "docker.io/a__b/c-d.e_f:latest");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
    }

    #[test]
    fn familiar_names() {
        assert_eq!(
            ImageRef::parse("docker.io/library/busybox")
                .unwrap()
                .familiar(),
            "busybox:latest"
        );
        assert_eq!(
            ImageRef::parse("user/app:1").unwrap().familiar(),
            "user/app:1"
        );
        assert_eq!(
            ImageRef::parse("localhost:5000/app")
                .unwrap()
                .familiar_repository(),
            "localhost:5000/app"
        );
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "Busybox",
            "a//b",
            "-a",
            "a-",
            "a:",
            "a:-x",
            "a@sha256:12",
            "a@md5:00",
            ":tag",
            "a..b",
            "a/b_",
            "loc host/a",
            "host:port/a",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(
            ImageRef::parse("Busybox"),
            Err(ReferenceError::Uppercase(_))
        ));
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(ImageRef::parse(&long_tag).is_err());
    }
}
