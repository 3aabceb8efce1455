//! Registries the machine's configuration declares insecure, as the tools kiln's users come from
//! declare them: Podman's and Buildah's `registries.conf` (containers-registries.conf(5), v2
//! format: `[[registry]]` tables with `location` or `prefix` and `insecure = true`) and Docker's
//! `daemon.json` (`"insecure-registries": ["host:port", "10.0.0.0/8"]`). An insecure registry is
//! tried with unverified HTTPS, then plain HTTP, as with `--tls-verify=false`.
//!
//! Files read: `$CONTAINERS_REGISTRIES_CONF` alone when it is set (as Podman does), else
//! `/etc/containers/registries.conf` and `$XDG_CONFIG_HOME/containers/registries.conf` (else
//! `~/.config/...`); and `/etc/docker/daemon.json`. A missing file declares nothing; a file
//! that does not parse is an error naming it (Podman and Docker refuse to start on one too).
//!
//! Not responsible for: mirrors, blocked registries or short-name aliases of registries.conf
//! (kiln normalises short names as Docker does), or what insecure means (see `endpoint`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{RegistryError, Result};
use super::tls;

/// The insecure registries of the configuration files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Insecure {
    /// `host[:port]` (or `host[:port]/namespace`) locations and prefixes.
    locations: Vec<String>,
    /// CIDR ranges (daemon.json): registries addressed by an IP in them.
    ranges: Vec<(IpAddr, u32)>,
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
}

#[derive(Deserialize, Default)]
struct DaemonJson {
    #[serde(rename = "insecure-registries", default)]
    insecure_registries: Vec<String>,
}

impl Insecure {
    /// From the machine's files (see the module docs).
    pub fn load() -> Result<Self> {
        let mut insecure = Insecure::default();
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
        for table in conf.registry.into_iter().filter(|t| t.insecure) {
            if let Some(location) = table.prefix.or(table.location) {
                self.locations
                    .push(location.trim_end_matches('/').to_owned());
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
        Ok(())
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
        let mut i = Insecure::default();
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
}
