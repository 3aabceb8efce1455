//! Build secrets (`--secret`) and SSH agent sockets (`--ssh`) given to a build, as Docker's
//! buildx takes them.
//!
//! Secret values are held in memory for the build only; they reach a RUN step as a file on a
//! private tmpfs-like directory bind-mounted read-only at the target, or as an environment
//! variable of that step's process. They never enter a layer, the history, a cache key or the
//! progress output. `Debug` does not print them.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Why a `--secret` or `--ssh` value is not usable.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("invalid --secret `{value}`: {reason}")]
    InvalidSecret { value: String, reason: String },
    #[error("--secret id={id}: cannot read `{path}`")]
    Read {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--secret id={id}: environment variable `{var}` is not set")]
    MissingEnv { id: String, var: String },
    #[error("invalid --ssh `{value}`: {reason}")]
    InvalidSsh { value: String, reason: String },
}

/// One secret's value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(<{} bytes>)", self.0.len())
    }
}

/// The secrets of a build, by id.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_id: BTreeMap<String, SecretValue>,
}

impl Secrets {
    pub fn get(&self, id: &str) -> Option<&SecretValue> {
        self.by_id.get(id)
    }

    pub fn insert(&mut self, id: impl Into<String>, value: Vec<u8>) {
        self.by_id.insert(id.into(), SecretValue(value));
    }

    /// Add one `--secret` value: `id=ID[,src=FILE|source=FILE][,env=VAR][,type=file|env]`.
    /// Without `src` and `env`, buildx's rule applies: the environment variable named like the
    /// id when it is set, else the file named like the id.
    pub fn add_flag(&mut self, value: &str) -> Result<(), SecretError> {
        let invalid = |reason: &str| SecretError::InvalidSecret {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for field in value.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| invalid(&format!("`{field}` is not key=value")))?;
            match k.to_ascii_lowercase().as_str() {
                "id" => id = Some(v.to_owned()),
                "src" | "source" => src = Some(v.to_owned()),
                "env" => env = Some(v.to_owned()),
                "type" => kind = Some(v.to_ascii_lowercase()),
                _ => return Err(invalid(&format!("unexpected key `{k}`"))),
            }
        }
        let id = match id.or_else(|| src.clone()).or_else(|| env.clone()) {
            Some(id) if !id.is_empty() => id,
            _ => return Err(invalid("an id is required")),
        };
        let from_env = match kind.as_deref() {
            Some("env") => true,
            Some("file") => false,
            Some(other) => return Err(invalid(&format!("unknown type `{other}`"))),
            None => env.is_some() || (src.is_none() && std::env::var_os(&id).is_some()),
        };
        let bytes = if from_env {
            let var = env.or(src).unwrap_or_else(|| id.clone());
            std::env::var_os(&var)
                .map(std::os::unix::ffi::OsStringExt::into_vec)
                .ok_or(SecretError::MissingEnv {
                    id: id.clone(),
                    var,
                })?
        } else {
            let path = PathBuf::from(src.unwrap_or_else(|| id.clone()));
            fs_err::read(&path).map_err(|e| SecretError::Read {
                id: id.clone(),
                path,
                source: e,
            })?
        };
        self.insert(id, bytes);
        Ok(())
    }
}

/// SSH agent sockets by id (`--ssh default`, `--ssh id=/path/to/socket`).
#[derive(Debug, Clone, Default)]
pub struct SshAgents {
    by_id: BTreeMap<String, PathBuf>,
}

impl SshAgents {
    pub fn get(&self, id: &str) -> Option<&PathBuf> {
        self.by_id.get(id)
    }

    /// Add one `--ssh` value: `ID` (the socket in `$SSH_AUTH_SOCK`) or `ID=SOCKET`.
    pub fn add_flag(&mut self, value: &str) -> Result<(), SecretError> {
        let invalid = |reason: &str| SecretError::InvalidSsh {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let (id, path) = match value.split_once('=') {
            Some((id, path)) => (id, PathBuf::from(path)),
            None => {
                let sock = std::env::var_os("SSH_AUTH_SOCK")
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        invalid("SSH_AUTH_SOCK is not set; give the socket as ID=PATH")
                    })?;
                (value, PathBuf::from(sock))
            }
        };
        if id.is_empty() {
            return Err(invalid("an id is required"));
        }
        if path.as_os_str().is_empty() {
            return Err(invalid("the socket path is empty"));
        }
        if path.extension().is_some_and(|e| e == "pub" || e == "pem") || path.is_file() {
            return Err(invalid(
                "key files are not supported; give an agent socket (ssh-agent)",
            ));
        }
        self.by_id.insert(id.to_owned(), path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        fs_err::write(&file, b"s3cr3t").unwrap();
        let mut s = Secrets::default();
        s.add_flag(&format!("id=tok,src={}", file.display()))
            .unwrap();
        assert_eq!(s.get("tok").unwrap().bytes(), b"s3cr3t");
        assert_eq!(
            format!("{:?}", s.get("tok").unwrap()),
            "SecretValue(<6 bytes>)"
        );
        // SAFETY-free: a unique variable name for this test.
        let var = "KILN_TEST_SECRET_FLAG_VAR";
        assert!(matches!(
            s.add_flag(&format!("id=e,env={var}")),
            Err(SecretError::MissingEnv { .. })
        ));
        assert!(matches!(
            s.add_flag("src="),
            Err(SecretError::InvalidSecret { .. })
        ));
        assert!(matches!(
            s.add_flag("id=x,bogus=1"),
            Err(SecretError::InvalidSecret { .. })
        ));
        assert!(matches!(
            s.add_flag("id=missing-file-xyz,src=/nonexistent/kiln"),
            Err(SecretError::Read { .. })
        ));
    }

    #[test]
    fn ssh_flags() {
        let mut a = SshAgents::default();
        a.add_flag("default=/run/agent.sock").unwrap();
        assert_eq!(a.get("default").unwrap(), &PathBuf::from("/run/agent.sock"));
        assert!(a.add_flag("=/x").is_err());
    }
}
