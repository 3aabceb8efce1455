//! `kiln login [-u USER] [-p PASS | --password-stdin] [SERVER]`: Docker's command, flags,
//! prompts and messages. The credentials are checked against the registry first and stored
//! only if it accepts them (see `registry::credentials` for where).

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};

use anyhow::{Context as _, anyhow};
use clap::Args;

use super::{CmdResult, Failure};
use crate::image::reference::DEFAULT_DOMAIN;
use crate::registry::credentials::key;
use crate::registry::{
    self, CredentialStore, Credentials, RegistryError, RegistryOptions, StoredIn,
};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (visible to other users of the machine: prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Take the password from stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Require HTTPS and verify certificates (`false` also allows plain HTTP).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// Registry server (default: Docker Hub). A URL's scheme and path are ignored.
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

/// The registry a `login`/`logout` argument names, as a reference's domain (`docker.io` for
/// Docker Hub, else `host[:port]`).
pub fn registry_of(server: Option<&str>) -> String {
    match server.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if !key::is_docker_hub(s) => key::hostname(s).to_owned(),
        _ => DEFAULT_DOMAIN.to_owned(),
    }
}

pub fn run(args: LoginArgs) -> CmdResult {
    let registry = registry_of(args.server.as_deref());
    let opts = RegistryOptions {
        tls_verify: args.tls_verify,
        ..RegistryOptions::default()
    };
    let store = &opts.credentials;

    // Docker's shortcut: no flags and credentials already stored → check those.
    if args.username.is_none() && args.password.is_none() && !args.password_stdin {
        let existing = store
            .get(&registry)
            .with_context(|| format!("reading the stored credentials for {registry}"))?;
        if let Some(credentials) = existing {
            eprintln!("Authenticating with existing credentials...");
            match registry::login(&registry, &credentials, &opts) {
                Ok(outcome) => return finish(store, &registry, credentials, outcome),
                Err(RegistryError::CredentialsRejected { .. })
                    if std::io::stdin().is_terminal() =>
                {
                    eprintln!("Login did not succeed, error: the stored credentials were rejected");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let password = if args.password_stdin {
        if args.username.is_none() {
            return Err(anyhow!("Must provide --username with --password-stdin").into());
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        Some(text.strip_suffix('\r').unwrap_or(text).to_owned())
    } else {
        args.password.clone()
    };

    let interactive = std::io::stdin().is_terminal();
    let username = match args.username {
        Some(u) => u,
        None if interactive => prompt("Username: ")?,
        None => return Err(non_tty()),
    };
    if username.trim().is_empty() {
        return Err(anyhow!("Non-null Username Required").into());
    }
    let password = match password {
        Some(p) => p,
        None if interactive => prompt_hidden("Password: ")?,
        None => return Err(non_tty()),
    };
    if password.is_empty() {
        return Err(anyhow!("Password Required").into());
    }

    let credentials = Credentials::password(username.trim(), password);
    let outcome = registry::login(&registry, &credentials, &opts)?;
    finish(store, &registry, credentials, outcome)
}

fn non_tty() -> Failure {
    Failure::Error(anyhow!(
        "Cannot perform an interactive login from a non TTY device"
    ))
}

/// Store what the registry accepted (its refresh token rather than the password, if it
/// issued one) and say so.
fn finish(
    store: &CredentialStore,
    registry: &str,
    credentials: Credentials,
    outcome: registry::LoginOutcome,
) -> CmdResult {
    let credentials = match outcome.identity_token {
        Some(token) => Credentials::identity_token(credentials.username, token),
        None => credentials,
    };
    let stored = store
        .store(registry, &credentials)
        .with_context(|| format!("storing the credentials for {registry}"))?;
    if let StoredIn::File(path) = stored {
        eprintln!(
            "WARNING! Your password will be stored unencrypted in {}.\n\
             Configure a credential helper (credsStore or credHelpers) to remove this warning.",
            path.display()
        );
    }
    println!("Login Succeeded");
    Ok(())
}

/// Ask on stderr, read a line from the terminal.
fn prompt(question: &str) -> anyhow::Result<String> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// [`prompt`] with the terminal's echo turned off.
fn prompt_hidden(question: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        let _ = tcsetattr(&stdin, OptionalActions::Now, &quiet);
    }
    let answer = prompt(question);
    if let Some(saved) = &saved {
        let _ = tcsetattr(&stdin, OptionalActions::Now, saved);
    }
    eprintln!();
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_arguments_name_registries() {
        assert_eq!(registry_of(None), "docker.io");
        assert_eq!(registry_of(Some("")), "docker.io");
        assert_eq!(
            registry_of(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(registry_of(Some("registry-1.docker.io")), "docker.io");
        assert_eq!(registry_of(Some("localhost:5000")), "localhost:5000");
        assert_eq!(
            registry_of(Some("https://registry.example:5000/v2/")),
            "registry.example:5000"
        );
    }
}
