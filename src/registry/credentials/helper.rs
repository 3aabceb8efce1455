//! The docker-credential-helpers protocol: `docker-credential-<name> <action>`, where
//! - `get` reads the server URL on stdin and prints `{"ServerURL","Username","Secret"}`
//!   (`Username` `<token>` means `Secret` is an identity token);
//! - `store` reads that JSON on stdin;
//! - `erase` reads the server URL on stdin.
//!
//! A helper fails by exiting non-zero with a message on stdout; "credentials not found in
//! native keychain" means there are none, which is not an error.
//!
//! Not responsible for: deciding which helper serves a registry (see `config`).

use std::ffi::OsStr;
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::{Deserialize, Serialize};

use super::{CredentialError, Credentials, Result, Secret};

/// The message helpers give when they hold nothing for a server.
pub const NOT_FOUND: &str = "credentials not found in native keychain";
/// The user name that marks an identity token.
const TOKEN_USERNAME: &str = "<token>";
/// Attempts when the helper is being written by someone else (`ETXTBSY`).
const BUSY_ATTEMPTS: u32 = 5;

#[derive(Serialize, Deserialize)]
struct Message {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The program name of helper `name`.
pub fn program_name(name: &str) -> String {
    format!("docker-credential-{name}")
}

/// Find `docker-credential-<name>` in `search_path` (a `PATH`-style list; relative entries are
/// ignored).
pub fn find(name: &str, search_path: Option<&OsStr>) -> Result<PathBuf> {
    let program = program_name(name);
    let missing = || CredentialError::HelperMissing {
        program: program.clone(),
    };
    if name.is_empty() || name.contains('/') {
        return Err(missing());
    }
    let search_path = search_path.ok_or_else(missing)?;
    std::env::split_paths(search_path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(&program))
        .find(|p| is_executable(p))
        .ok_or_else(missing)
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `get`: the credentials the helper holds for `server`, if any.
pub fn get(program: &Path, server: &str) -> Result<Option<Credentials>> {
    let out = run(program, "get", server.as_bytes())?;
    if !out.status.success() {
        return if says_not_found(&out) {
            Ok(None)
        } else {
            Err(failure(program, "get", &out))
        };
    }
    let message: Message =
        serde_json::from_slice(&out.stdout).map_err(|e| CredentialError::Helper {
            program: display(program),
            action: "get",
            detail: format!("its answer is not credentials JSON: {e}"),
        })?;
    if message.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if message.username == TOKEN_USERNAME {
        Credentials::identity_token("", message.secret)
    } else {
        Credentials::password(message.username, message.secret)
    }))
}

/// `store`: hand the credentials for `server` to the helper.
pub fn store(program: &Path, server: &str, credentials: &Credentials) -> Result<()> {
    let (username, secret) = match &credentials.secret {
        Secret::Password(p) => (credentials.username.clone(), p.clone()),
        Secret::IdentityToken(t) => (TOKEN_USERNAME.to_owned(), t.clone()),
    };
    let input = serde_json::to_vec(&Message {
        server_url: server.to_owned(),
        username,
        secret,
    })
    .unwrap_or_default();
    let out = run(program, "store", &input)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failure(program, "store", &out))
    }
}

/// `erase`: remove the helper's credentials for `server`; whether it had any.
pub fn erase(program: &Path, server: &str) -> Result<bool> {
    let out = run(program, "erase", server.as_bytes())?;
    if out.status.success() {
        Ok(true)
    } else if says_not_found(&out) {
        Ok(false)
    } else {
        Err(failure(program, "erase", &out))
    }
}

fn says_not_found(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stdout).contains(NOT_FOUND)
        || String::from_utf8_lossy(&out.stderr).contains(NOT_FOUND)
}

fn display(program: &Path) -> String {
    program.file_name().map_or_else(
        || program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn failure(program: &Path, action: &'static str, out: &Output) -> CredentialError {
    let mut detail = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str(stderr.trim());
    }
    if detail.is_empty() {
        detail = format!("exited with {}", out.status);
    }
    CredentialError::Helper {
        program: display(program),
        action,
        detail,
    }
}

/// Run `program action` with `input` on stdin and collect its output.
fn run(program: &Path, action: &str, input: &[u8]) -> Result<Output> {
    let spawn_error = |source| CredentialError::HelperSpawn {
        program: display(program),
        source,
    };
    let mut attempt = 0;
    let mut child = loop {
        attempt += 1;
        match Command::new(program)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => break child,
            // The helper is being installed (or, in tests, another thread's fork still holds
            // it open for writing): wait a moment.
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempt < BUSY_ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(20 * u64::from(attempt)));
            }
            Err(e) => return Err(spawn_error(e)),
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input closes the pipe; its exit status says
        // what went wrong.
        let _ = stdin.write_all(input);
    }
    child.wait_with_output().map_err(spawn_error)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::ffi::OsString;

    /// A helper script keeping one file per server in `<dir>/store/`, and a log of its calls
    /// in `<dir>/calls`. Used by the tests of the whole store too.
    pub(crate) const FAKE_HELPER: &str =
        include_str!("../../../testdata/docker-credential-fake.sh");

    /// Write `docker-credential-<name>` with `script` into `dir`; returns a search path
    /// holding only `dir` and the system directories the script needs.
    pub(crate) fn install(dir: &Path, name: &str, script: &str) -> OsString {
        let path = dir.join(program_name(name));
        fs_err::write(&path, script).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::env::join_paths([dir, Path::new("/usr/bin"), Path::new("/bin")]).unwrap()
    }

    #[test]
    fn store_get_erase_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let search = install(dir.path(), "fake", FAKE_HELPER);
        let program = find("fake", Some(&search)).unwrap();
        assert_eq!(get(&program, "reg.example:5000").unwrap(), None);

        let creds = Credentials::password("me", "p\"w d");
        store(&program, "reg.example:5000", &creds).unwrap();
        assert_eq!(get(&program, "reg.example:5000").unwrap(), Some(creds));
        let token = Credentials::identity_token("ignored", "refresh-1");
        store(&program, "tok.example", &token).unwrap();
        assert_eq!(
            get(&program, "tok.example").unwrap(),
            Some(Credentials::identity_token("", "refresh-1"))
        );
        let stored = fs_err::read_to_string(dir.path().join("store/tok.example")).unwrap();
        assert!(stored.contains(r#""Username":"<token>""#), "{stored}");

        assert!(erase(&program, "reg.example:5000").unwrap());
        assert!(!erase(&program, "reg.example:5000").unwrap());
        assert_eq!(get(&program, "reg.example:5000").unwrap(), None);
        let calls = fs_err::read_to_string(dir.path().join("calls")).unwrap();
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            [
                "get", "store", "get", "store", "get", "erase", "erase", "get"
            ]
        );
    }

    #[test]
    fn failures_are_reported_with_the_helper_output() {
        let dir = tempfile::tempdir().unwrap();
        let search = install(
            dir.path(),
            "broken",
            "#!/bin/sh\necho 'keychain is locked'\necho 'more detail' >&2\nexit 3\n",
        );
        let program = find("broken", Some(&search)).unwrap();
        let err = get(&program, "r").unwrap_err().to_string();
        assert_eq!(
            err,
            "credential helper docker-credential-broken get failed: keychain is locked; more detail"
        );
        let garbage = install(dir.path(), "garbage", "#!/bin/sh\necho not-json\n");
        let program = find("garbage", Some(&garbage)).unwrap();
        let err = get(&program, "r").unwrap_err().to_string();
        assert!(err.contains("not credentials JSON"), "{err}");
    }

    #[test]
    fn helpers_are_found_only_in_the_given_path() {
        let dir = tempfile::tempdir().unwrap();
        let search = install(dir.path(), "here", FAKE_HELPER);
        assert!(find("here", Some(&search)).is_ok());
        for missing in [
            find("absent", Some(&search)),
            find("here", None),
            find("here", Some(OsStr::new("relative/dir"))),
            find("../here", Some(&search)),
        ] {
            assert!(
                matches!(missing, Err(CredentialError::HelperMissing { .. })),
                "{missing:?}"
            );
        }
        assert_eq!(
            find("absent", Some(&search)).unwrap_err().to_string(),
            "credential helper docker-credential-absent not found in PATH"
        );
    }
}
