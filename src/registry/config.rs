//! What the machine's configuration says about registries, as the tools kiln's users come from
//! say it: Podman's and Buildah's `registries.conf` (containers-registries.conf(5), v2 format:
//! `[[registry]]` tables with `location` or `prefix`, `insecure = true`, and
//! `[[registry.mirror]]` tables with `location` and `insecure`) and Docker's `daemon.json`
//! (`"insecure-registries": ["host:port", "10.0.0.0/8"]`, `"registry-mirrors"` for Docker Hub).
//!
//! - An insecure registry (or mirror) is tried with unverified HTTPS, then plain HTTP, as with
//!   `--tls-verify=false`.
//! - Pulls try a registry's mirrors first, in order, then the registry itself (see `pull`);
//!   pushes never use mirrors.
//!
//! Files read: `$CONTAINERS_REGISTRIES_CONF` alone when it is set (as Podman does), else
//! `/etc/containers/registries.conf` and `$XDG_CONFIG_HOME/containers/registries.conf` (else
//! `~/.config/...`); and `/etc/docker/daemon.json`. A missing file declares nothing; a file
//! that does not parse is an error naming it (Podman and Docker refuse to start on one too).
//!
//! Not responsible for: blocked registries, `pull-from-mirror` or short-name aliases of
//! registries.conf (kiln normalises short names as Docker does), or what insecure means (see
//! `endpoint`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{RegistryError, Result};
use super::tls;

/// The registries configuration: insecure registries and pull mirrors.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Registries {
    /// `host[:port]` (or `host[:port]/namespace`) locations and prefixes.
    locations: Vec<String>,
    /// CIDR ranges (daemon.json): registries addressed by an IP in them.
    ranges: Vec<(IpAddr, u32)>,
    /// Pull mirrors, by registry prefix.
    mirrors: Vec<Mirrors>,
}

#[derive(Deserialize, Default)]
struct RegistriesConf {
    #[serde(default)]
    registry: Vec<RegistryTable>,
}

#[derive(Deserialize)]
struct RegistryTable {
    location: Option<String>,
    prefix: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    mirror: Vec<MirrorTable>,
}

#[derive(Deserialize)]
struct MirrorTable {
    location: String,
    #[serde(default)]
    insecure: bool,
}

#[derive(Deserialize, Default)]
struct DaemonJson {
    #[serde(rename = "insecure-registries", default)]
    insecure_registries: Vec<String>,
    #[serde(rename = "registry-mirrors", default)]
    registry_mirrors: Vec<String>,
}

/// Pull mirrors: for references under `prefix` (`host[:port]` or `host[:port]/namespace`),
/// the `locations` to try first, in order (a location replaces the prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    pub prefix: String,
    pub locations: Vec<String>,
}

impl Registries {
    /// From the machine's files (see the module docs).
    pub fn load() -> Result<Self> {
        let mut insecure = Registries::default();
        for path in registries_conf_paths() {
            if let Some(text) = read_optional(&path)? {
                insecure.add_registries_conf(&path, &text)?;
            }
        }
        let daemon = Path::new("/etc/docker/daemon.json");
        if let Some(text) = read_optional(daemon)? {
            insecure.add_daemon_json(daemon, &text)?;
        }
        Ok(insecure)
    }

    fn add_registries_conf(&mut self, path: &Path, text: &str) -> Result<()> {
        let conf: RegistriesConf = toml::from_str(text).map_err(|e| config_error(path, e))?;
        for table in conf.registry {
            let Some(prefix) = table.prefix.or(table.location) else {
                continue;
            };
            let prefix = prefix.trim_end_matches('/').to_owned();
            for mirror in table.mirror.iter().filter(|m| m.insecure) {
                self.locations
                    .push(mirror.location.trim_end_matches('/').to_owned());
            }
            if !table.mirror.is_empty() {
                self.mirrors.push(Mirrors {
                    prefix: prefix.clone(),
                    locations: table
                        .mirror
                        .iter()
                        .map(|m| m.location.trim_end_matches('/').to_owned())
                        .collect(),
                });
            }
            if table.insecure {
                self.locations.push(prefix);
            }
        }
        Ok(())
    }

    fn add_daemon_json(&mut self, path: &Path, text: &str) -> Result<()> {
        let daemon: DaemonJson = serde_json::from_str(text).map_err(|e| config_error(path, e))?;
        for entry in daemon.insecure_registries {
            let cidr = entry.split_once('/').and_then(|(ip, bits)| {
                Some((ip.parse::<IpAddr>().ok()?, bits.parse::<u32>().ok()?))
            });
            match cidr {
                Some(range) => self.ranges.push(range),
                None => self.locations.push(entry.trim_end_matches('/').to_owned()),
            }
        }
        // Docker's mirrors are for Docker Hub only, given as URLs; `http://` ones are insecure.
        let mut hub = Vec::new();
        for url in &daemon.registry_mirrors {
            let plain = url.strip_prefix("http://");
            let host = plain
                .or_else(|| url.strip_prefix("https://"))
                .unwrap_or(url)
                .trim_end_matches('/')
                .to_owned();
            if plain.is_some() {
                self.locations.push(host.clone());
            }
            hub.push(host);
        }
        if !hub.is_empty() {
            self.mirrors.push(Mirrors {
                prefix: crate::image::reference::DEFAULT_DOMAIN.to_owned(),
                locations: hub,
            });
        }
        Ok(())
    }

    /// The repositories to try before `repository` (`host[:port]/path`, as in a reference), in
    /// order: for the longest matching prefix with mirrors, each mirror location followed by
    /// the rest of the path.
    pub fn mirrors_of(&self, repository: &str) -> Vec<String> {
        let matches = |prefix: &str| {
            repository == prefix
                || repository
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        self.mirrors
            .iter()
            .filter(|m| matches(&m.prefix))
            .max_by_key(|m| m.prefix.len())
            .map(|m| {
                let rest = &repository[m.prefix.len()..];
                m.locations.iter().map(|l| format!("{l}{rest}")).collect()
            })
            .unwrap_or_default()
    }

    /// Whether registry `host` (`host[:port]`) is declared insecure: a location that is the
    /// host or starts with `host/` (a namespace of it), or a range holding its IP address.
    pub fn contains(&self, host: &str) -> bool {
        let by_location = self.locations.iter().any(|l| {
            l == host
                || l.strip_prefix(host)
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        let ip = host
            .rsplit_once(':')
            .map_or(host, |(name, _)| name)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        by_location
            || ip.is_some_and(|ip| {
                self.ranges
                    .iter()
                    .any(|&(net, bits)| tls::in_cidr(ip, net, bits))
            })
    }
}

fn registries_conf_paths() -> Vec<PathBuf> {
    if let Some(only) = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|v| !v.is_empty()) {
        return vec![PathBuf::from(only)];
    }
    let mut paths = vec![PathBuf::from("/etc/containers/registries.conf")];
    if let Some(home) = tls::config_home() {
        paths.push(home.join("containers/registries.conf"));
    }
    paths
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs_err::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(config_error(path, e)),
    }
}

fn config_error(path: &Path, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Config {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_conf_and_daemon_json_declare_insecure_registries() {
        let mut i = Registries::default();
        i.add_registries_conf(
            Path::new("r.conf"),
            r#"
unqualified-search-registries = ["docker.io"]

[[registry]]
location = "reg.internal:5000"
insecure = true

[[registry]]
prefix = "quay.io/team"
location = "quay.io/team"
insecure = true

[[registry]]
location = "secure.example"
"#,
        )
        .unwrap();
        i.add_daemon_json(
            Path::new("daemon.json"),
            r#"{"insecure-registries": ["old.internal", "10.0.0.0/8"], "debug": true}"#,
        )
        .unwrap();
        assert!(i.contains("reg.internal:5000"));
        assert!(!i.contains("reg.internal:5001"));
        assert!(!i.contains("reg.internal"));
        assert!(i.contains("quay.io"), "a namespace of quay.io is declared");
        assert!(!i.contains("secure.example"));
        assert!(i.contains("old.internal"));
        assert!(i.contains("10.2.3.4:5000"));
        assert!(!i.contains("11.2.3.4:5000"));
        let err = i
            .add_registries_conf(Path::new("bad.conf"), "[[registry]\n")
            .err()
            .unwrap();
        assert!(err.to_string().contains("bad.conf"), "{err}");
    }

    #[test]
    fn mirrors_come_first_for_their_prefix() {
        let mut i = Registries::default();
        i.add_registries_conf(
            Path::new("r.conf"),
            r#"
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror.internal:5000/hub"
[[registry.mirror]]
location = "plain.internal:5000"
insecure = true

[[registry]]
prefix = "docker.io/team"
location = "docker.io/team"
[[registry.mirror]]
location = "team-mirror.internal"
"#,
        )
        .unwrap();
        assert_eq!(
            i.mirrors_of("docker.io/library/busybox"),
            [
                "mirror.internal:5000/hub/library/busybox",
                "plain.internal:5000/library/busybox"
            ]
        );
        assert_eq!(
            i.mirrors_of("docker.io/team/app"),
            ["team-mirror.internal/app"]
        );
        assert!(i.mirrors_of("quay.io/x/y").is_empty());
        assert!(i.mirrors_of("docker.iox/y").is_empty());
        assert!(i.contains("plain.internal:5000"), "an insecure mirror");
        assert!(!i.contains("mirror.internal:5000"));
        let mut d = Registries::default();
        d.add_daemon_json(
            Path::new("daemon.json"),
            r#"{"registry-mirrors": ["https://hub-mirror.example", "http://10.1.1.1:5000/"]}"#,
        )
        .unwrap();
        assert_eq!(
            d.mirrors_of("docker.io/library/debian"),
            [
                "hub-mirror.example/library/debian",
                "10.1.1.1:5000/library/debian"
            ]
        );
        assert!(
            d.contains("10.1.1.1:5000"),
            "an http:// mirror is used over HTTP"
        );
        assert!(d.mirrors_of("quay.io/a/b").is_empty());
    }
}
