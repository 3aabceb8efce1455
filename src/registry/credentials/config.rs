//! Docker's `config.json` as far as credentials go: `auths` (`{"auth": base64("user:pass"),
//! "identitytoken": "..."}` per registry key), `credsStore` and `credHelpers`.
//!
//! The whole document is kept, so saving preserves every key kiln does not know (`proxies`,
//! `psFormat`, `currentContext`, ...) in its order. Saving is atomic (a temporary file in the
//! same directory, synced, then renamed over the file; a symlinked file is written through its
//! target) and the file is made mode 0600. Written with tab indentation, as Docker writes it.
//!
//! Not responsible for: credential helpers (see `helper`) or choosing between them and the
//! file (see the module root).

use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize as _;
use serde_json::{Map, Value};

use super::key;
use super::{CredentialError, Credentials, Result, Secret};

const AUTHS: &str = "auths";
const CREDS_STORE: &str = "credsStore";
const CRED_HELPERS: &str = "credHelpers";

/// A loaded config file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl ConfigFile {
    /// Load `path`; a missing or empty file is an empty config.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(CredentialError::Read(e)),
        };
        Self::parse(path, &text)
    }

    /// Parse the text of the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let doc = if text.trim().is_empty() {
            Map::new()
        } else {
            serde_json::from_str(text).map_err(|source| CredentialError::Parse {
                path: path.to_owned(),
                source,
            })?
        };
        Ok(Self {
            path: path.to_owned(),
            doc,
        })
    }

    /// The helper name configured for the registry with key `key`: `credHelpers` (exact key,
    /// then any key naming the same registry), else `credsStore`. Empty names mean none.
    pub fn helper_for(&self, key: &str) -> Option<&str> {
        fn non_empty(v: &Value) -> Option<&str> {
            v.as_str().filter(|s| !s.trim().is_empty())
        }
        if let Some(helpers) = self.doc.get(CRED_HELPERS).and_then(Value::as_object) {
            let found = helpers.get(key).and_then(non_empty).or_else(|| {
                helpers
                    .iter()
                    .filter(|(k, _)| key::matches(k, key))
                    .find_map(|(_, v)| non_empty(v))
            });
            if found.is_some() {
                return found;
            }
        }
        self.doc.get(CREDS_STORE).and_then(non_empty)
    }

    /// The credentials stored in `auths` for key `key` (the exact key first, then the first
    /// key naming the same registry that holds credentials).
    pub fn auth(&self, key: &str) -> Result<Option<Credentials>> {
        let Some(auths) = self.doc.get(AUTHS).and_then(Value::as_object) else {
            return Ok(None);
        };
        if let Some(entry) = auths.get(key)
            && let Some(credentials) = self.decode(key, entry)?
        {
            return Ok(Some(credentials));
        }
        for (stored, entry) in auths {
            if stored != key
                && key::matches(stored, key)
                && let Some(credentials) = self.decode(stored, entry)?
            {
                return Ok(Some(credentials));
            }
        }
        Ok(None)
    }

    /// One `auths` entry: `auth` (base64 `user:password`), or `username`/`password` fields, and
    /// `identitytoken`, which wins over a password. An entry with none of them (Docker writes
    /// `{}` when a helper holds the secret) gives `None`.
    fn decode(&self, key: &str, entry: &Value) -> Result<Option<Credentials>> {
        let invalid = |detail: String| CredentialError::Invalid {
            path: self.path.clone(),
            detail: format!("auths entry `{key}`: {detail}"),
        };
        let Some(entry) = entry.as_object() else {
            return Err(invalid("not an object".to_owned()));
        };
        let field = |name: &str| -> Result<Option<&str>> {
            match entry.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(invalid(format!("`{name}` is not a string"))),
            }
        };
        let (mut username, mut password) = (
            field("username")?.map(str::to_owned),
            field("password")?.map(str::to_owned),
        );
        if let Some(auth) = field("auth")? {
            let bytes = STANDARD
                .decode(auth.trim())
                .map_err(|e| invalid(format!("`auth` is not base64: {e}")))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| invalid("`auth` is not UTF-8 text".to_owned()))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| invalid("`auth` is not `username:password`".to_owned()))?;
            username = Some(user.to_owned());
            password = Some(pass.trim_end_matches('\0').to_owned()).filter(|p| !p.is_empty());
        }
        let username = username.unwrap_or_default();
        Ok(if let Some(token) = field("identitytoken")? {
            Some(Credentials::identity_token(username, token))
        } else {
            password.map(|password| Credentials::password(username, password))
        })
    }

    /// Set the `auths` entry for `key`: the credentials as Docker encodes them, or an empty
    /// entry when a helper holds them.
    pub fn set_auth(&mut self, key: &str, credentials: Option<&Credentials>) {
        let mut entry = Map::new();
        if let Some(c) = credentials {
            let (password, token) = match &c.secret {
                Secret::Password(p) => (p.as_str(), None),
                Secret::IdentityToken(t) => ("", Some(t)),
            };
            if !c.username.is_empty() || !password.is_empty() {
                let auth = STANDARD.encode(format!("{}:{password}", c.username));
                entry.insert("auth".to_owned(), Value::String(auth));
            }
            if let Some(token) = token {
                entry.insert("identitytoken".to_owned(), Value::String(token.clone()));
            }
        }
        let auths = self
            .doc
            .entry(AUTHS)
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(auths) = auths {
            auths.insert(key.to_owned(), Value::Object(entry));
        }
    }

    /// Remove every `auths` entry naming the registry with key `key`; whether any was there.
    pub fn remove_auths(&mut self, key: &str) -> bool {
        let Some(Value::Object(auths)) = self.doc.get_mut(AUTHS) else {
            return false;
        };
        let before = auths.len();
        auths.retain(|stored, _| !key::matches(stored, key));
        auths.len() != before
    }

    /// The document as Docker writes it (tab-indented JSON).
    pub fn to_text(&self) -> String {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            serde_json::ser::PrettyFormatter::with_indent(b"\t"),
        );
        // Serializing a map of JSON values into memory cannot fail.
        let _ = self.doc.serialize(&mut ser);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Write the file atomically with mode 0600 (its directory is made, mode 0700, if
    /// missing).
    pub fn save(&self) -> Result<()> {
        // Write through a symlink, as Docker does, rather than replacing the link.
        let path = fs_err::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let write_error = |source| CredentialError::Write {
            path: path.clone(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(write_error)?;
        let name = path.file_name().map_or_else(
            || "config.json".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .tempfile_in(&dir)
            .map_err(write_error)?;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(write_error)?;
        temp.write_all(self.to_text().as_bytes())
            .map_err(write_error)?;
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist(&path).map_err(|e| write_error(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::credentials::key::DOCKER_HUB_KEY;

    fn parse(text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("/cfg/config.json"), text).unwrap()
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn real_world_docker_config() {
        // As Docker Desktop / docker login write it, with other settings around.
        let text = format!(
            r#"{{
	"auths": {{
		"https://index.docker.io/v1/": {{}},
		"ghcr.io": {{ "auth": "{}" }},
		"https://registry.example:5000/v2/": {{ "auth": "{}" }},
		"token.example": {{ "auth": "{}", "identitytoken": "refresh-abc" }},
		"quay.io/team/app": {{ "username": "robot", "password": "pw" }}
	}},
	"credsStore": "desktop",
	"credHelpers": {{ "123456789.dkr.ecr.us-east-1.amazonaws.com": "ecr-login", "gcr.io": "" }},
	"currentContext": "default",
	"proxies": {{ "default": {{ "httpProxy": "http://proxy:3128" }} }}
}}"#,
            b64("octocat:ghp_secret:with:colons"),
            b64("me:pw"),
            b64("alice:")
        );
        let c = parse(&text);
        assert_eq!(
            c.auth("ghcr.io").unwrap(),
            Some(Credentials::password("octocat", "ghp_secret:with:colons"))
        );
        assert_eq!(
            c.auth("registry.example:5000").unwrap(),
            Some(Credentials::password("me", "pw"))
        );
        assert_eq!(
            c.auth("token.example").unwrap(),
            Some(Credentials::identity_token("alice", "refresh-abc"))
        );
        assert_eq!(
            c.auth("quay.io").unwrap(),
            Some(Credentials::password("robot", "pw"))
        );
        assert_eq!(c.auth(DOCKER_HUB_KEY).unwrap(), None);
        assert_eq!(c.auth("unknown.example").unwrap(), None);

        assert_eq!(
            c.helper_for("123456789.dkr.ecr.us-east-1.amazonaws.com"),
            Some("ecr-login")
        );
        // An empty credHelpers entry falls back to credsStore.
        assert_eq!(c.helper_for("gcr.io"), Some("desktop"));
        assert_eq!(c.helper_for("ghcr.io"), Some("desktop"));
    }

    #[test]
    fn empty_missing_and_invalid_files() {
        assert_eq!(parse("").auth("x").unwrap(), None);
        assert_eq!(parse("{}").helper_for("x"), None);
        assert_eq!(parse(r#"{"credsStore": ""}"#).helper_for("x"), None);
        let err = ConfigFile::parse(Path::new("/c.json"), "{not json").unwrap_err();
        assert!(err.to_string().contains("/c.json"), "{err}");
        let bad = parse(r#"{"auths": {"r.example": {"auth": "%%%"}}}"#);
        let err = bad.auth("r.example").unwrap_err().to_string();
        assert!(err.contains("r.example") && err.contains("base64"), "{err}");
        let no_colon = parse(&format!(
            r#"{{"auths": {{"r.example": {{"auth": "{}"}}}}}}"#,
            b64("nocolon")
        ));
        assert!(no_colon.auth("r.example").is_err());
        let missing = ConfigFile::load(Path::new("/nonexistent/kiln/config.json")).unwrap();
        assert_eq!(missing.auth("x").unwrap(), None);
    }

    #[test]
    fn docker_hub_aliases_are_found() {
        let c = parse(&format!(
            r#"{{"auths": {{"docker.io": {{"auth": "{}"}}}}}}"#,
            b64("podman:user")
        ));
        assert_eq!(
            c.auth(DOCKER_HUB_KEY).unwrap(),
            Some(Credentials::password("podman", "user"))
        );
    }

    #[test]
    fn set_and_remove_preserve_other_keys() {
        let mut c = parse(
            r#"{"psFormat": "table {{.ID}}", "auths": {"http://localhost:5000": {"auth": "eDp5"}, "other:1": {}}, "zzz": [1]}"#,
        );
        c.set_auth("localhost:5000", Some(&Credentials::password("u", "p")));
        c.set_auth("tok:1", Some(&Credentials::identity_token("u", "rt")));
        c.set_auth("helper:1", None);
        let v: Value = serde_json::from_str(&c.to_text()).unwrap();
        assert_eq!(v["psFormat"], "table {{.ID}}");
        assert_eq!(v["zzz"], serde_json::json!([1]));
        assert_eq!(v["auths"]["localhost:5000"]["auth"], b64("u:p"));
        assert_eq!(v["auths"]["tok:1"]["auth"], b64("u:"));
        assert_eq!(v["auths"]["tok:1"]["identitytoken"], "rt");
        assert_eq!(v["auths"]["helper:1"], serde_json::json!({}));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["psFormat", "auths", "zzz"], "order is kept");
        assert!(c.to_text().contains("\n\t\"auths\""), "{}", c.to_text());

        assert!(c.remove_auths("localhost:5000"));
        let v: Value = serde_json::from_str(&c.to_text()).unwrap();
        let auths = v["auths"].as_object().unwrap();
        assert!(!auths.contains_key("localhost:5000"));
        assert!(!auths.contains_key("http://localhost:5000"));
        assert!(auths.contains_key("other:1"));
        assert!(!c.remove_auths("localhost:5000"));
    }

    #[test]
    fn save_is_atomic_private_and_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real").join("config.json");
        let mut c = ConfigFile::load(&real).unwrap();
        c.set_auth("r:1", Some(&Credentials::password("u", "p")));
        c.save().unwrap();
        let mode = fs_err::metadata(&real).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs_err::metadata(real.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);

        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut c = ConfigFile::load(&link).unwrap();
        assert_eq!(
            c.auth("r:1").unwrap(),
            Some(Credentials::password("u", "p"))
        );
        c.set_auth("s:2", Some(&Credentials::password("v", "q")));
        c.save().unwrap();
        assert!(fs_err::symlink_metadata(&link).unwrap().is_symlink());
        let again = ConfigFile::load(&real).unwrap();
        assert!(again.auth("s:2").unwrap().is_some());
        // No temporary files are left next to it.
        let names: Vec<_> = fs_err::read_dir(real.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.json"]);
    }
}
