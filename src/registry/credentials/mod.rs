//! Registry credentials, where Docker keeps them: the `auths` of `config.json` (base64
//! `user:password` in `auth`, or an OAuth2 `identitytoken`), or a credential helper
//! (`credsStore` for every registry, `credHelpers` per registry) spoken to through the
//! `docker-credential-<name> get|store|erase` protocol.
//!
//! The file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (Docker). Podman's
//! `REGISTRY_AUTH_FILE`, when set, names the file instead (Podman, Buildah and Skopeo honour it;
//! Docker does not); it has the same format. Keys are normalised as Docker does (see [`key`]).
//!
//! Not responsible for: what the registry does with credentials (see `auth`), or prompting the
//! user (see `cli::login`).

pub mod config;
pub mod helper;
pub mod key;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use config::ConfigFile;

/// A secret for one registry, as the user gave it to `login`.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A password (or a personal access token used as one): sent with `Basic` authentication,
    /// or to the token server.
    Password(String),
    /// An OAuth2 refresh token a token server issued at login (Docker's `identitytoken`).
    IdentityToken(String),
}

/// A user name and a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// May be empty with an identity token (credential helpers do not return one).
    pub username: String,
    pub secret: Secret,
}

impl Credentials {
    /// Username and password.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            secret: Secret::Password(password.into()),
        }
    }

    /// Username and identity token.
    pub fn identity_token(username: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            secret: Secret::IdentityToken(token.into()),
        }
    }
}

/// Secrets are never printed.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.secret {
            Secret::Password(_) => "password",
            Secret::IdentityToken(_) => "identity token",
        };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &format_args!("<{kind}>"))
            .finish()
    }
}

/// Where `store` put credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredIn {
    /// Base64 in the config file (unencrypted).
    File(PathBuf),
    /// In the credential helper `docker-credential-<name>`.
    Helper(String),
}

/// Errors reading or writing credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the credentials file")]
    Read(#[source] io::Error),
    #[error("{} is not a valid credentials file (Docker's config.json format)", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {detail}", .path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("cannot write the credentials file {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("credential helper {program} not found in PATH")]
    HelperMissing { program: String },
    #[error("running credential helper {program}")]
    HelperSpawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("credential helper {program} {action} failed: {detail}")]
    Helper {
        program: String,
        action: &'static str,
        detail: String,
    },
}

/// Result of credential operations.
pub type Result<T, E = CredentialError> = std::result::Result<T, E>;

/// Where credentials are read from and written to: a config file and the `PATH` used to find
/// credential helpers. Both are captured when the store is made, so tests (and callers) can
/// point kiln elsewhere without changing the process environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialStore {
    file: PathBuf,
    search_path: Option<OsString>,
}

impl Default for CredentialStore {
    fn default() -> Self {
        Self::from_env()
    }
}

impl CredentialStore {
    /// The store the environment names: `REGISTRY_AUTH_FILE` (Podman's variable) if set, else
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; helpers are looked up in
    /// `PATH`.
    pub fn from_env() -> Self {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let file = if let Some(file) = var("REGISTRY_AUTH_FILE") {
            PathBuf::from(file)
        } else if let Some(dir) = var("DOCKER_CONFIG") {
            PathBuf::from(dir).join("config.json")
        } else {
            let home = var("HOME")
                .map(PathBuf::from)
                .or_else(std::env::home_dir)
                .unwrap_or_else(|| PathBuf::from("/"));
            home.join(".docker").join("config.json")
        };
        Self::new(file, var("PATH"))
    }

    /// A store with this config file, finding helpers in `search_path` (a `PATH`-style list).
    pub fn new(file: impl Into<PathBuf>, search_path: Option<OsString>) -> Self {
        Self {
            file: file.into(),
            search_path,
        }
    }

    /// The config file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The credentials for `registry` (a reference's domain or a `login` argument), if any.
    /// With a helper configured for the registry, only the helper is asked (as Docker does).
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        let key = key::server_key(registry);
        let config = ConfigFile::load(&self.file)?;
        match config.helper_for(&key) {
            Some(name) => helper::get(&self.helper(name)?, &key),
            None => config.auth(&key),
        }
    }

    /// Store credentials for `registry`: in its credential helper when one is configured (the
    /// file then keeps an empty entry, as Docker writes it), else base64 in the file.
    pub fn store(&self, registry: &str, credentials: &Credentials) -> Result<StoredIn> {
        let key = key::server_key(registry);
        let mut config = ConfigFile::load(&self.file)?;
        let stored = match config.helper_for(&key).map(str::to_owned) {
            Some(name) => {
                helper::store(&self.helper(&name)?, &key, credentials)?;
                config.set_auth(&key, None);
                StoredIn::Helper(name)
            }
            None => {
                config.set_auth(&key, Some(credentials));
                StoredIn::File(self.file.clone())
            }
        };
        config.save()?;
        Ok(stored)
    }

    /// Remove the credentials for `registry` from its helper (if configured) and from the file
    /// (every key naming the registry). Returns whether anything was removed.
    pub fn erase(&self, registry: &str) -> Result<bool> {
        let key = key::server_key(registry);
        let mut config = ConfigFile::load(&self.file)?;
        let mut removed = false;
        if let Some(name) = config.helper_for(&key).map(str::to_owned) {
            removed |= helper::erase(&self.helper(&name)?, &key)?;
        }
        if config.remove_auths(&key) {
            config.save()?;
            removed = true;
        }
        Ok(removed)
    }

    /// The path of helper `docker-credential-<name>`.
    fn helper(&self, name: &str) -> Result<PathBuf> {
        helper::find(name, self.search_path.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::helper::tests::{FAKE_HELPER, install};
    use super::*;

    fn read_json(path: &Path) -> serde_json::Value {
        serde_json::from_str(&fs_err::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn file_store_round_trip_keeps_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        fs_err::write(&file, r#"{"detachKeys": "ctrl-e,e"}"#).unwrap();
        let store = CredentialStore::new(&file, None);
        assert_eq!(store.get("localhost:5000").unwrap(), None);
        let creds = Credentials::password("u", "p");
        assert_eq!(
            store.store("http://localhost:5000/v2/", &creds).unwrap(),
            StoredIn::File(file.clone())
        );
        assert_eq!(store.get("localhost:5000").unwrap(), Some(creds));
        let v = read_json(&file);
        assert_eq!(v["detachKeys"], "ctrl-e,e");
        assert!(v["auths"]["localhost:5000"]["auth"].is_string());
        assert!(store.erase("localhost:5000").unwrap());
        assert!(!store.erase("localhost:5000").unwrap());
        assert_eq!(store.get("localhost:5000").unwrap(), None);
        assert_eq!(read_json(&file)["detachKeys"], "ctrl-e,e");
    }

    #[test]
    fn helpers_hold_the_secret_and_the_file_an_empty_entry() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs_err::create_dir(&bin).unwrap();
        let search = install(&bin, "fake", FAKE_HELPER);
        let file = dir.path().join("config.json");
        fs_err::write(
            &file,
            r#"{"credsStore": "absent", "credHelpers": {"reg.example": "fake"}}"#,
        )
        .unwrap();
        let store = CredentialStore::new(&file, Some(search));

        let creds = Credentials::password("u", "p");
        assert_eq!(
            store.store("reg.example", &creds).unwrap(),
            StoredIn::Helper("fake".into())
        );
        assert_eq!(
            read_json(&file)["auths"]["reg.example"],
            serde_json::json!({})
        );
        assert_eq!(store.get("reg.example").unwrap(), Some(creds));
        assert!(bin.join("store/reg.example").is_file());

        // Other registries go to credsStore, which is not installed.
        let err = store.get("other.example").unwrap_err();
        assert_eq!(
            err.to_string(),
            "credential helper docker-credential-absent not found in PATH"
        );

        assert!(store.erase("reg.example").unwrap());
        assert!(!bin.join("store/reg.example").exists());
        assert!(read_json(&file)["auths"].as_object().unwrap().is_empty());
        assert_eq!(store.get("reg.example").unwrap(), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", Credentials::password("me", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("me") && shown.contains("<password>"),
            "{shown}"
        );
        let shown = format!("{:?}", Credentials::identity_token("", "tok-123"));
        assert!(!shown.contains("tok-123"), "{shown}");
    }
}
