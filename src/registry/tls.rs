//! Per-registry TLS material and proxies, as Docker and containerd find them.
//!
//! **Certificates** (`certs.d`, Docker's "Verify repository client certificates"): for a registry
//! `host[:port]`, each of these directories may hold a `host[:port]/` directory, read in order:
//! `/etc/docker/certs.d`, `/etc/containers/certs.d` (Podman, Buildah, Skopeo) and
//! `$XDG_CONFIG_HOME/kiln/certs.d` (else `~/.config/kiln/certs.d`). In it, every `*.crt` is a CA
//! certificate trusted for that registry *in addition to* the system's roots, and a `NAME.cert`
//! with its `NAME.key` is a client certificate offered to it. A `*.cert` without its key (or the
//! reverse) is an error, as in Docker.
//!
//! **Proxies**, as Go's `net/http` `ProxyFromEnvironment` (Docker, containerd, Podman): HTTPS
//! registries use `HTTPS_PROXY`, plain-HTTP ones `HTTP_PROXY` (either case); `NO_PROXY` lists
//! hosts that go direct (`*`, `host`, `.domain` or `domain` for the domain and its
//! subdomains, optional `:port`, IP addresses and CIDR ranges); `localhost` and loopback
//! addresses never use a proxy.
//!
//! Not responsible for: building the agent (see `transport`) or choosing HTTPS or HTTP (see
//! `endpoint`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey};

use super::error::{RegistryError, Result};

/// The certificates of one registry found in the `certs.d` directories.
#[derive(Default)]
pub struct HostCerts {
    /// CA certificates (`*.crt`) to trust besides the system's.
    pub roots: Vec<Certificate<'static>>,
    /// The first client certificate chain and key (`*.cert` + `*.key`).
    pub client: Option<ClientCert>,
}

/// The `certs.d` directories, in the order they are read.
pub fn certs_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/etc/docker/certs.d"),
        PathBuf::from("/etc/containers/certs.d"),
    ];
    if let Some(home) = config_home() {
        dirs.push(home.join("kiln/certs.d"));
    }
    dirs
}

/// `$XDG_CONFIG_HOME`, else `~/.config` (the XDG base directory rule).
pub(super) fn config_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
}

/// The certificates for registry `host` (`host[:port]`) in `dirs`.
pub fn host_certs(dirs: &[PathBuf], host: &str) -> Result<HostCerts> {
    let mut found = HostCerts::default();
    for dir in dirs {
        let dir = dir.join(host);
        let Ok(entries) = fs_err::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => found.roots.extend(certificates(host, &path)?),
                Some("cert") => {
                    let key = path.with_extension("key");
                    if !key.is_file() {
                        return Err(certs_error(host, &path, "no matching .key file"));
                    }
                    if found.client.is_none() {
                        found.client = Some(ClientCert::new_with_certs(
                            &certificates(host, &path)?,
                            private_key(host, &key)?,
                        ));
                    }
                }
                Some("key") if !path.with_extension("cert").is_file() => {
                    return Err(certs_error(host, &path, "no matching .cert file"));
                }
                _ => {}
            }
        }
    }
    Ok(found)
}

fn certs_error(host: &str, path: &Path, reason: impl Into<String>) -> RegistryError {
    RegistryError::CertsDir {
        host: host.to_owned(),
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn pem_items(host: &str, path: &Path) -> Result<Vec<PemItem<'static>>> {
    let bytes = fs_err::read(path).map_err(|e| certs_error(host, path, e.to_string()))?;
    ureq::tls::parse_pem(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| certs_error(host, path, format!("not valid PEM: {e}")))
}

fn certificates(host: &str, path: &Path) -> Result<Vec<Certificate<'static>>> {
    let certs: Vec<Certificate<'static>> = pem_items(host, path)?
        .into_iter()
        .filter_map(|item| match item {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(certs_error(host, path, "no certificate in it"));
    }
    Ok(certs)
}

fn private_key(host: &str, path: &Path) -> Result<PrivateKey<'static>> {
    pem_items(host, path)?
        .into_iter()
        .find_map(|item| match item {
            PemItem::PrivateKey(k) => Some(k),
            _ => None,
        })
        .ok_or_else(|| certs_error(host, path, "no private key in it"))
}

/// The system's trust roots (the platform store, as `rustls-native-certs` reads it), for an
/// agent that also trusts a registry's own CA.
pub fn system_roots() -> Vec<Certificate<'static>> {
    rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect()
}

/// The proxy URL for a registry `host[:port]` over HTTPS or HTTP, from `env` (a lookup of
/// environment variables), or `None` to connect directly.
pub fn proxy_url(host: &str, https: bool, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let var = |upper: &str| {
        env(upper)
            .or_else(|| env(&upper.to_ascii_lowercase()))
            .filter(|v| !v.is_empty())
    };
    let (name, port) = split_host_port(host);
    let port = port.unwrap_or(if https { 443 } else { 80 });
    if name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    {
        return None;
    }
    if var("NO_PROXY").is_some_and(|list| no_proxy_matches(&list, name, port)) {
        return None;
    }
    var(if https { "HTTPS_PROXY" } else { "HTTP_PROXY" })
}

/// `host` and its port from `host[:port]` (`[v6]:port` too).
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some((addr, after)) = host.strip_prefix('[').and_then(|r| r.split_once(']')) {
        return (addr, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

/// Whether a `NO_PROXY` list sends `name:port` direct (Go's `httpproxy` rules).
fn no_proxy_matches(list: &str, name: &str, port: u16) -> bool {
    let name = name.to_ascii_lowercase();
    let ip = name.parse::<IpAddr>().ok();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((net, bits)) = entry.split_once('/') {
                return match (ip, net.parse::<IpAddr>(), bits.parse::<u32>()) {
                    (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
                    _ => false,
                };
            }
            let (pattern, entry_port) = split_host_port(entry);
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let pattern = pattern.to_ascii_lowercase();
            if let (Some(ip), Ok(entry_ip)) = (ip, pattern.parse::<IpAddr>()) {
                return ip == entry_ip;
            }
            let domain = pattern.trim_start_matches("*.").trim_start_matches('.');
            name == domain || name.ends_with(&format!(".{domain}"))
        })
}

/// Whether `ip` is in the range `net/bits` (both of one address family).
pub(super) fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn proxies_follow_go_rules() {
        let e = env(&[
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("http_proxy", "http://plain:80"),
            (
                "NO_PROXY",
                "internal.example, .corp, 10.0.0.0/8, reg.example:5000, ::1",
            ),
        ]);
        let p = |host, https| proxy_url(host, https, &e);
        assert_eq!(p("quay.io", true).as_deref(), Some("http://proxy:3128"));
        assert_eq!(
            p("quay.io", false).as_deref(),
            Some("http://plain:80"),
            "lower case too"
        );
        // Loopback and localhost never go through a proxy.
        assert_eq!(p("127.0.0.1:5000", true), None);
        assert_eq!(p("localhost:5000", true), None);
        assert_eq!(p("[::1]:5000", true), None);
        // NO_PROXY: a domain and its subdomains, a leading dot, CIDR, host:port.
        assert_eq!(p("internal.example", true), None);
        assert_eq!(p("a.internal.example:443", true), None);
        assert_eq!(p("x.corp", true), None);
        assert_eq!(p("10.1.2.3:5000", true), None);
        assert_eq!(p("11.1.2.3", true).as_deref(), Some("http://proxy:3128"));
        assert_eq!(p("reg.example:5000", true), None);
        assert_eq!(
            p("reg.example:5001", true).as_deref(),
            Some("http://proxy:3128")
        );
        assert_eq!(
            p("notinternal.example", true).as_deref(),
            Some("http://proxy:3128")
        );
        let all = env(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")]);
        assert_eq!(proxy_url("quay.io", true, &all), None);
        assert_eq!(proxy_url("quay.io", true, &env(&[])), None);
    }

    #[test]
    fn certs_dirs_give_cas_and_a_client_pair() {
        let d = tempfile::tempdir().unwrap();
        let host = d.path().join("reg.example:5000");
        fs_err::create_dir_all(&host).unwrap();
        // Not a registry's business: files with other extensions are ignored.
        fs_err::write(host.join("README"), "x").unwrap();
        let dirs = vec![d.path().to_path_buf(), d.path().join("missing")];
        let none = host_certs(&dirs, "other:1").unwrap();
        assert!(none.roots.is_empty() && none.client.is_none());
        fs_err::write(host.join("ca.crt"), "not pem").unwrap();
        let err = host_certs(&dirs, "reg.example:5000").err().unwrap();
        assert!(err.to_string().contains("ca.crt"), "{err}");
        fs_err::write(host.join("client.cert"), "").unwrap();
        fs_err::remove_file(host.join("ca.crt")).unwrap();
        let err = host_certs(&dirs, "reg.example:5000").err().unwrap();
        assert!(err.to_string().contains("no matching .key"), "{err}");
    }
}
