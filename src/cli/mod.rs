//! Command-line interface: clap argument structs (one file per subcommand) and the rendering of
//! results, tables, JSON and errors. Engine logic lives in the library modules.
//!
//! Exit codes: 0 success; 1 the operation failed (bad Dockerfile, failed step, missing image,
//! unreachable registry, ...); 2 usage error (clap); 3 internal error (a store that cannot be
//! opened, a bug). stdout carries only data (image IDs, JSON, digests); everything else goes to
//! stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod build;
mod builder;
mod format;
mod images;
mod inspect;
mod load;
mod login;
mod logout;
mod progress;
mod pull;
mod push;
mod rmi;
mod save;
mod tag;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::store::Store;

/// kiln: build OCI images from Dockerfiles, without a daemon.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Store root (default: /var/lib/kiln as root, else $XDG_DATA_HOME/kiln).
    #[arg(long, global = true, env = "KILN_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// How unpacked filesystems are stored: `overlay` (overlayfs) or `copy` (full copies, for
    /// filesystems where overlayfs cannot be used). Default: overlay when it can be mounted on
    /// the store's filesystem, else copy.
    #[arg(
        long,
        global = true,
        env = "KILN_STORAGE_DRIVER",
        value_name = "DRIVER"
    )]
    pub storage_driver: Option<snapshotter::snapshot::StorageDriver>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(Box<build::BuildArgs>),
    /// List images.
    #[command(alias = "image-ls")]
    Images(images::ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(tag::TagArgs),
    /// Remove one or more images.
    Rmi(rmi::RmiArgs),
    /// Download an image from a registry.
    Pull(pull::PullArgs),
    /// Upload an image to a registry.
    Push(push::PushArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    Save(save::SaveArgs),
    /// Load images from a tar archive or STDIN.
    Load(load::LoadArgs),
    /// Log in to a registry.
    Login(login::LoginArgs),
    /// Log out from a registry.
    Logout(logout::LogoutArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage builds (the build cache).
    #[command(subcommand)]
    Builder(builder::BuilderCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Display detailed information on one or more images.
    Inspect(inspect::InspectArgs),
    /// List images.
    #[command(alias = "list", name = "ls")]
    Ls(images::ImagesArgs),
    /// Remove one or more images.
    #[command(alias = "remove", name = "rm")]
    Rm(rmi::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(tag::TagArgs),
    /// Download an image from a registry.
    Pull(pull::PullArgs),
    /// Upload an image to a registry.
    Push(push::PushArgs),
    /// Build an image from a Dockerfile.
    Build(Box<build::BuildArgs>),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    Save(save::SaveArgs),
    /// Load images from a tar archive or STDIN.
    Load(load::LoadArgs),
    /// Remove untagged (dangling) images.
    Prune(rmi::PruneArgs),
}

/// How a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The operation failed; the message is already rendered.
    Rendered(String),
    /// The operation failed with an error chain.
    Error(anyhow::Error),
    /// Something is wrong with kiln or its store rather than the input.
    Internal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Error(e.into())
    }
}

pub type CmdResult = Result<(), Failure>;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rendered(text)) => {
            eprint!("{text}");
            if !text.ends_with('\n') {
                eprintln!();
            }
            ExitCode::from(1)
        }
        Err(Failure::Error(e)) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::from(1)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("internal error: {}", chain(&e));
            ExitCode::from(3)
        }
    }
}

/// `outer: inner: root cause` on one line, without repeating a message its cause already says.
pub fn chain(e: &anyhow::Error) -> String {
    join_causes(e.chain())
}

/// [`chain`] for a borrowed error.
pub fn chain_of(e: &(dyn std::error::Error + 'static)) -> String {
    join_causes(std::iter::successors(Some(e), |e| e.source()))
}

fn join_causes<'a>(causes: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in causes {
        let msg = cause.to_string();
        if parts.last().is_some_and(|prev| prev.ends_with(&msg)) || msg.is_empty() {
            continue;
        }
        parts.push(msg);
    }
    parts.join(": ")
}

fn run(cli: Cli) -> CmdResult {
    let root = cli.global.root.clone().unwrap_or_else(Store::default_root);
    let open = || {
        Store::open(&root).map_err(|e| {
            Failure::Internal(
                anyhow::Error::new(e).context(format!("opening store at {}", root.display())),
            )
        })
    };
    match cli.command {
        Command::Build(a) | Command::Image(ImageCommand::Build(a)) => {
            build::run(open, &root, cli.global.storage_driver, *a)
        }
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::run(&open()?, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => tag::run(&open()?, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => rmi::run(&open()?, a),
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => {
            pull::run(&open()?, cli.global.storage_driver, a)
        }
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => push::run(&open()?, a),
        Command::Image(ImageCommand::Inspect(a)) => inspect::run(&open()?, a),
        Command::Image(ImageCommand::Prune(a)) => rmi::prune(&open()?, a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => save::run(&open()?, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => {
            load::run(&open()?, cli.global.storage_driver, a)
        }
        Command::Builder(c) => builder::run(&open()?, c),
        Command::Login(a) => login::run(a),
        Command::Logout(a) => logout::run(a),
    }
}

/// Parse an image reference given on the command line.
pub fn parse_ref(s: &str) -> Result<crate::image::ImageRef, Failure> {
    crate::image::ImageRef::parse(s).map_err(|e| Failure::Error(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn chain_joins_causes_once() {
        let e = anyhow::anyhow!("root cause")
            .context("middle")
            .context("outer");
        assert_eq!(chain(&e), "outer: middle: root cause");
    }
}
