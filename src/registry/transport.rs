//! The HTTP layer under the registry client: `ureq` agents configured for registries (TLS with
//! the platform's trust store or without verification, no redirects of request bodies, no
//! status-as-error), and the translation of `ureq` failures into [`RegistryError`]s that say
//! whether the registry was unreachable, the TLS handshake failed, or the exchange broke.
//!
//! Not responsible for: which URL to call (see `endpoint`), authentication (see `auth`) or
//! interpreting HTTP statuses (see `client`).

use std::io;
use std::time::Duration;

use ureq::http::Method;
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
use url::Url;

use super::error::RegistryError;
use super::tls;

const USER_AGENT: &str = concat!("kiln/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a registry may take to start answering a request (after the body was sent).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a transfer may stall (no bytes read or written) before it is abandoned.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Redirects followed for GET/HEAD (blob downloads are often redirected to object storage).
const MAX_REDIRECTS: u32 = 10;

/// An agent for one endpoint of registry `host` (`host[:port]`), over HTTPS or plain HTTP.
/// With `verify_tls`, certificates are checked against the platform's trust store, plus the
/// registry's own CAs from the `certs.d` directories (see `tls`); without, any certificate is
/// accepted (insecure registries only). A client certificate found there is offered either way.
/// The proxy is chosen from the environment as Docker does (`tls::proxy_url`).
pub fn agent(host: &str, https: bool, verify_tls: bool) -> Result<ureq::Agent, RegistryError> {
    let certs = tls::host_certs(&tls::certs_dirs(), host)?;
    let roots = if certs.roots.is_empty() {
        RootCerts::PlatformVerifier
    } else {
        let mut roots = tls::system_roots();
        roots.extend(certs.roots);
        RootCerts::new_with_certs(&roots)
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .client_cert(certs.client)
        .disable_verification(!verify_tls)
        .build();
    let env = |name: &str| std::env::var(name).ok();
    let proxy = tls::proxy_url(host, https, &env)
        .map(|url| {
            ureq::Proxy::new(&url).map_err(|e| RegistryError::Proxy {
                host: host.to_owned(),
                reason: e.to_string(),
                url,
            })
        })
        .transpose()?;
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(proxy)
        .tls_config(tls)
        .user_agent(USER_AGENT)
        .max_redirects(MAX_REDIRECTS)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(RESPONSE_TIMEOUT))
        .timeout_per_read(Some(STALL_TIMEOUT))
        .timeout_per_write(Some(STALL_TIMEOUT))
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

/// Translate a failed exchange with `url` into an error naming the host and the cause.
pub fn classify(err: ureq::Error, method: &Method, url: &Url) -> RegistryError {
    let host = host_of(url);
    let https = url.scheme() == "https";
    let unreachable = |reason: String, err| RegistryError::Unreachable {
        host: host.clone(),
        reason,
        source: Box::new(err),
    };
    match &err {
        ureq::Error::HostNotFound => unreachable("host not found".to_owned(), err),
        ureq::Error::ConnectionFailed => unreachable("connection failed".to_owned(), err),
        ureq::Error::Timeout(ureq::Timeout::Resolve) => {
            unreachable("timed out resolving the host name".to_owned(), err)
        }
        ureq::Error::Timeout(ureq::Timeout::Connect) => {
            unreachable("timed out connecting".to_owned(), err)
        }
        ureq::Error::Io(e) if is_connect_failure(e.kind()) => {
            unreachable(e.kind().to_string(), err)
        }
        ureq::Error::Io(e) if https && e.kind() == io::ErrorKind::InvalidData => {
            // rustls reports handshake failures (bad certificate, a plain-HTTP peer) as
            // InvalidData I/O errors wrapping a rustls::Error.
            let reason = e
                .get_ref()
                .map_or_else(|| e.to_string(), ToString::to_string);
            RegistryError::Tls {
                host,
                reason,
                source: Box::new(err),
            }
        }
        ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::TlsRequired => {
            let reason = match &err {
                ureq::Error::Rustls(e) => e.to_string(),
                other => other.to_string(),
            };
            RegistryError::Tls {
                host,
                reason,
                source: Box::new(err),
            }
        }
        _ => {
            let reason = match &err {
                ureq::Error::Io(e) => e.to_string(),
                ureq::Error::Timeout(t) => format!("timed out ({t})"),
                other => other.to_string(),
            };
            RegistryError::Transport {
                host,
                method: method.to_string(),
                url: url.to_string(),
                reason,
                source: Box::new(err),
            }
        }
    }
}

/// Like [`classify`], for the first request on an HTTPS endpoint (the API version check): a
/// connection that breaks with an I/O error before any HTTP answer broke in the TLS handshake,
/// typically because the peer speaks plain HTTP and closed on the ClientHello.
pub fn classify_first_contact(err: ureq::Error, method: &Method, url: &Url) -> RegistryError {
    let https = url.scheme() == "https";
    match classify(err, method, url) {
        RegistryError::Transport {
            host,
            reason,
            source,
            ..
        } if https && matches!(*source, ureq::Error::Io(_)) => RegistryError::Tls {
            host,
            reason,
            source,
        },
        other => other,
    }
}

fn is_connect_failure(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::AddrNotAvailable
    )
}

/// `host[:port]` of a URL, as shown in messages.
pub fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => url.to_string(),
    }
}

/// Read a whole response body of at most `limit` bytes. `Ok(None)` when it is larger.
pub fn read_body(body: ureq::Body, limit: u64) -> Result<Option<Vec<u8>>, ureq::Error> {
    match body.into_with_config().limit(limit).read_to_vec() {
        Ok(bytes) => Ok(Some(bytes)),
        Err(ureq::Error::BodyExceedsLimit(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_refused_is_unreachable() {
        let url = Url::parse("http://127.0.0.1:1/v2/").unwrap();
        let err = ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        let e = classify(err, &Method::GET, &url);
        assert_eq!(
            e.to_string(),
            "cannot reach registry 127.0.0.1:1: connection refused"
        );
        let e = classify(
            ureq::Error::HostNotFound,
            &Method::GET,
            &Url::parse("https://nowhere.invalid/v2/").unwrap(),
        );
        assert_eq!(
            e.to_string(),
            "cannot reach registry nowhere.invalid: host not found"
        );
    }

    #[test]
    fn invalid_data_over_https_is_tls() {
        let url = Url::parse("https://reg.example:5000/v2/").unwrap();
        let err = ureq::Error::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "received corrupt message",
        ));
        let e = classify(err, &Method::GET, &url);
        assert!(matches!(e, RegistryError::Tls { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "tls connection to registry reg.example:5000 failed: received corrupt message"
        );
    }

    #[test]
    fn broken_first_contact_over_https_is_tls() {
        let https = Url::parse("https://reg.example/v2/").unwrap();
        let eof = || ureq::Error::Io(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert!(matches!(
            classify_first_contact(eof(), &Method::GET, &https),
            RegistryError::Tls { .. }
        ));
        let http = Url::parse("http://reg.example/v2/").unwrap();
        assert!(matches!(
            classify_first_contact(eof(), &Method::GET, &http),
            RegistryError::Transport { .. }
        ));
        let refused = ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(matches!(
            classify_first_contact(refused, &Method::GET, &https),
            RegistryError::Unreachable { .. }
        ));
    }

    #[test]
    fn broken_exchange_is_transport() {
        let url = Url::parse("http://reg.example/v2/a/blobs/x").unwrap();
        let err = ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionReset));
        let e = classify(err, &Method::GET, &url);
        assert!(matches!(e, RegistryError::Transport { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with(
                "GET http://reg.example/v2/a/blobs/x to registry reg.example failed: "
            ),
            "{e}"
        );
    }
}
