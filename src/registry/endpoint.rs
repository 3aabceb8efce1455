//! Where a registry's API lives: the API host for a reference's domain, which schemes to try
//! (HTTPS with verification, or for insecure registries unverified HTTPS then plain HTTP), and
//! the URLs of the distribution API (`/v2/<name>/manifests/<ref>`, blob uploads and their
//! `Location` headers).
//!
//! Not responsible for: sending requests (see `client`) or authentication (see `auth`).

use std::net::{IpAddr, Ipv6Addr};

use snapshotter::Digest;
use url::Url;

use crate::image::reference::DEFAULT_DOMAIN;

/// The API host of Docker Hub: `docker.io` names it in references, but the API is served here.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// How a registry's transport is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// HTTPS with certificate verification only.
    Verified,
    /// An insecure registry: HTTPS without certificate verification is tried first, then plain
    /// HTTP (Docker's behaviour for `insecure-registries`, Podman's `--tls-verify=false`).
    Insecure,
}

/// One way of talking to a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https { verify: bool },
    Http,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https { .. } => "https",
            Scheme::Http => "http",
        }
    }
}

/// The host (with port) that serves the API for a reference's `domain`.
pub fn api_host(domain: &str) -> &str {
    if domain == DEFAULT_DOMAIN {
        DOCKER_HUB_API_HOST
    } else {
        domain
    }
}

/// The security of `domain` given the user's `--tls-verify` (`None` when not given) and
/// whether the configuration declares it insecure (`config`): an explicit choice wins;
/// otherwise loopback registries (as in Docker, where `127.0.0.0/8` is an insecure registry by
/// default) and declared ones are insecure, and all others need verified TLS.
pub fn security(domain: &str, tls_verify: Option<bool>, declared_insecure: bool) -> Security {
    match tls_verify {
        Some(true) => Security::Verified,
        Some(false) => Security::Insecure,
        None if declared_insecure || is_loopback(domain) => Security::Insecure,
        None => Security::Verified,
    }
}

/// The schemes to try, in order, for a registry of this security.
pub fn candidates(security: Security) -> &'static [Scheme] {
    match security {
        Security::Verified => &[Scheme::Https { verify: true }],
        Security::Insecure => &[Scheme::Https { verify: false }, Scheme::Http],
    }
}

/// Whether a registry domain (`host[:port]`) names this machine: `localhost`, an address in
/// `127.0.0.0/8`, or `::1` (written `[::1]`).
pub fn is_loopback(domain: &str) -> bool {
    let host = host_without_port(domain);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback());
    }
    host.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

fn host_without_port(domain: &str) -> &str {
    if domain.starts_with('[') {
        // `[v6]` or `[v6]:port`.
        return match domain.find(']') {
            Some(end) => &domain[..=end],
            None => domain,
        };
    }
    domain.rsplit_once(':').map_or(domain, |(host, _)| host)
}

/// The base URL (`scheme://host/`) of a registry's API.
pub fn base_url(scheme: Scheme, host: &str) -> Result<Url, url::ParseError> {
    Url::parse(&format!("{}://{host}/", scheme.as_str()))
}

/// `GET /v2/`: the API version check, which also yields the authentication challenge.
pub fn ping_url(base: &Url) -> Result<Url, url::ParseError> {
    base.join("/v2/")
}

/// `/v2/<name>/manifests/<reference>` (a tag or a digest). `name` and `reference` come from a
/// validated `ImageRef`, so they contain only URL-safe characters.
pub fn manifest_url(base: &Url, name: &str, reference: &str) -> Result<Url, url::ParseError> {
    base.join(&format!("/v2/{name}/manifests/{reference}"))
}

/// `/v2/<name>/blobs/<digest>`.
pub fn blob_url(base: &Url, name: &str, digest: &Digest) -> Result<Url, url::ParseError> {
    base.join(&format!("/v2/{name}/blobs/{digest}"))
}

/// `/v2/<name>/blobs/uploads/`: starts an upload session.
pub fn upload_start_url(base: &Url, name: &str) -> Result<Url, url::ParseError> {
    base.join(&format!("/v2/{name}/blobs/uploads/"))
}

/// Resolve an upload session's `Location` header against the URL of the request that returned
/// it (RFC 9110 §10.2.2): absolute URLs are taken as they are, absolute paths and relative
/// references are resolved against `request_url`. Query parameters (session state) are kept.
pub fn resolve_location(request_url: &Url, location: &str) -> Result<Url, url::ParseError> {
    request_url.join(location.trim())
}

/// The URL that completes a monolithic upload: the session `location` with `digest=<digest>`
/// appended to whatever query it already has.
pub fn upload_complete_url(location: &Url, digest: &Digest) -> Url {
    let mut url = location.clone();
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_has_its_own_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("quay.io"), "quay.io");
        assert_eq!(api_host("localhost:5000"), "localhost:5000");
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for local in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:5000",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in [
            "docker.io",
            "10.0.0.1:5000",
            "128.0.0.1",
            "localhost.example.com",
            "[::2]:5000",
            "[fe80::1]",
            "my-localhost:5000",
        ] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }

    #[test]
    fn scheme_choice_follows_tls_verify_then_loopback_and_configuration() {
        assert_eq!(security("docker.io", None, false), Security::Verified);
        assert_eq!(security("localhost:5000", None, false), Security::Insecure);
        assert_eq!(security("127.0.0.1:5000", None, false), Security::Insecure);
        assert_eq!(security("[::1]:5000", None, false), Security::Insecure);
        assert_eq!(
            security("registry.internal:5000", Some(false), false),
            Security::Insecure
        );
        assert_eq!(
            security("registry.internal:5000", None, true),
            Security::Insecure,
            "declared insecure in registries.conf or daemon.json"
        );
        assert_eq!(
            security("registry.internal:5000", Some(true), true),
            Security::Verified,
            "--tls-verify=true wins"
        );
        assert_eq!(
            security("localhost:5000", Some(true), false),
            Security::Verified
        );
        assert_eq!(
            candidates(Security::Verified),
            &[Scheme::Https { verify: true }]
        );
        assert_eq!(
            candidates(Security::Insecure),
            &[Scheme::Https { verify: false }, Scheme::Http]
        );
    }

    #[test]
    fn api_urls() {
        let base = base_url(Scheme::Http, "127.0.0.1:5000").unwrap();
        assert_eq!(
            ping_url(&base).unwrap().as_str(),
            "http://127.0.0.1:5000/v2/"
        );
        assert_eq!(
            manifest_url(&base, "a/b", "v1").unwrap().as_str(),
            "http://127.0.0.1:5000/v2/a/b/manifests/v1"
        );
        let d = Digest::of(b"");
        assert_eq!(
            blob_url(&base, "a", &d).unwrap().as_str(),
            format!("http://127.0.0.1:5000/v2/a/blobs/{d}")
        );
        assert_eq!(
            upload_start_url(&base, "a").unwrap().as_str(),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/"
        );
        let v6 = base_url(Scheme::Https { verify: true }, "[::1]:5000").unwrap();
        assert_eq!(v6.as_str(), "https://[::1]:5000/");
    }

    #[test]
    fn locations_resolve_relative_absolute_and_keep_queries() {
        let req = Url::parse("https://reg.example/v2/app/blobs/uploads/").unwrap();
        let abs_path = resolve_location(&req, "/v2/app/blobs/uploads/1234?_state=abc").unwrap();
        assert_eq!(
            abs_path.as_str(),
            "https://reg.example/v2/app/blobs/uploads/1234?_state=abc"
        );
        let relative = resolve_location(&req, "1234").unwrap();
        assert_eq!(
            relative.as_str(),
            "https://reg.example/v2/app/blobs/uploads/1234"
        );
        let absolute =
            resolve_location(&req, "https://storage.example/upload/xyz?sig=1&x=2").unwrap();
        assert_eq!(
            absolute.as_str(),
            "https://storage.example/upload/xyz?sig=1&x=2"
        );

        let d = Digest::of(b"hello");
        let with_query = upload_complete_url(&abs_path, &d);
        assert_eq!(
            with_query.as_str(),
            format!(
                "https://reg.example/v2/app/blobs/uploads/1234?_state=abc&digest=sha256%3A{}",
                d.hex()
            )
        );
        let without_query = upload_complete_url(&relative, &d);
        assert_eq!(
            without_query.as_str(),
            format!(
                "https://reg.example/v2/app/blobs/uploads/1234?digest=sha256%3A{}",
                d.hex()
            )
        );
        let pairs: Vec<_> = with_query
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("_state".to_owned(), "abc".to_owned()),
                ("digest".to_owned(), d.to_string())
            ]
        );
    }
}
