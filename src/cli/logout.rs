//! `kiln logout [SERVER]`: remove the credentials `kiln login` (or `docker login`) stored, from
//! the config file and the credential helper. Docker's messages.

use anyhow::Context as _;
use clap::Args;

use super::CmdResult;
use super::login::registry_of;
use crate::registry::CredentialStore;
use crate::registry::credentials::key;

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry server (default: Docker Hub).
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

pub fn run(args: LogoutArgs) -> CmdResult {
    let registry = registry_of(args.server.as_deref());
    let shown = key::server_key(&registry);
    let removed = CredentialStore::from_env()
        .erase(&registry)
        .with_context(|| format!("removing the credentials for {shown}"))?;
    if removed {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(())
}
