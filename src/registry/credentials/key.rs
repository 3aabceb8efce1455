//! Registry keys in credential files, normalised as Docker does.
//!
//! Docker Hub's credentials live under its historical index URL `https://index.docker.io/v1/`;
//! every other registry under `host[:port]`. Files written by other tools (or by old Docker
//! versions) may use keys with a scheme and a path (`https://registry.example/v2/`,
//! `quay.io/org/repo` from Podman), so lookups compare the host part of each key.
//!
//! Not responsible for: reading or writing the files (see `config`, `helper`).

use crate::image::reference::DEFAULT_DOMAIN;

/// The key of Docker Hub's credentials (Docker's `IndexServer`).
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Host names that all mean Docker Hub.
const DOCKER_HUB_HOSTS: [&str; 3] = [DEFAULT_DOMAIN, "index.docker.io", "registry-1.docker.io"];

/// The host (with port) of a key: the scheme and any path are dropped
/// (Docker's `credentials.ConvertToHostname`).
pub fn hostname(key: &str) -> &str {
    let key = key.trim();
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// Whether `host` (a key's host part or a reference's domain) is Docker Hub.
pub fn is_docker_hub(host: &str) -> bool {
    DOCKER_HUB_HOSTS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(hostname(host)))
}

/// The key credentials for a registry are stored under: [`DOCKER_HUB_KEY`] for Docker Hub,
/// else `host[:port]`. Accepts a reference's domain (`docker.io`, `localhost:5000`) or what a
/// user gives `login` (`https://registry.example/v2/`).
pub fn server_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_KEY.to_owned()
    } else {
        hostname(registry).to_owned()
    }
}

/// Whether a stored key names the registry whose key is `wanted` (a [`server_key`]).
pub fn matches(stored: &str, wanted: &str) -> bool {
    if stored == wanted {
        return true;
    }
    if wanted == DOCKER_HUB_KEY {
        return is_docker_hub(stored);
    }
    hostname(stored).eq_ignore_ascii_case(hostname(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_drop_scheme_and_path() {
        assert_eq!(hostname("localhost:5000"), "localhost:5000");
        assert_eq!(hostname("https://registry.example/v2/"), "registry.example");
        assert_eq!(hostname("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(hostname("quay.io/org/repo"), "quay.io");
        assert_eq!(hostname(DOCKER_HUB_KEY), "index.docker.io");
        assert_eq!(hostname(" [::1]:5000/ "), "[::1]:5000");
    }

    #[test]
    fn docker_hub_has_one_key() {
        for hub in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
            "https://registry-1.docker.io/v2/",
            "DOCKER.IO",
        ] {
            assert_eq!(server_key(hub), DOCKER_HUB_KEY, "{hub}");
        }
        assert_eq!(server_key("localhost:5000"), "localhost:5000");
        assert_eq!(server_key("https://quay.io/v2/"), "quay.io");
        assert_eq!(server_key("ghcr.io/owner/image"), "ghcr.io");
    }

    #[test]
    fn stored_keys_match_tolerantly() {
        assert!(matches(DOCKER_HUB_KEY, DOCKER_HUB_KEY));
        assert!(matches("docker.io", DOCKER_HUB_KEY));
        assert!(matches("https://index.docker.io/v1/", DOCKER_HUB_KEY));
        assert!(!matches("quay.io", DOCKER_HUB_KEY));
        assert!(matches("https://localhost:5000/v2/", "localhost:5000"));
        assert!(matches("http://localhost:5000", "localhost:5000"));
        assert!(matches("localhost:5000/team/app", "localhost:5000"));
        assert!(!matches("localhost:5001", "localhost:5000"));
        assert!(!matches("localhost", "localhost:5000"));
        assert!(!matches(DOCKER_HUB_KEY, "index.docker.io.example"));
    }
}
