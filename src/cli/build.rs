//! `kiln build [OPTIONS] CONTEXT`: Docker's `build` flags that the engine supports today, and
//! `--call`/`--check` (see [`call`]), which evaluate the build without running it.

mod call;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::Args;

use super::transfer::{Direction, TransferLines};
use super::{CmdResult, Failure, parse_ref};
use crate::image::{ImageRef, Platform};
use crate::progress::{Event, Reporter};
use crate::registry::{self, RegistryOptions};
use crate::sandbox::Backend;
use crate::sandbox::oci::OciRuntime;
use crate::solver::context::ContextError;
use crate::solver::steps::run::RunSettings;
use crate::solver::{self, BuildError, BuildRequest};
use crate::store::Store;
use snapshotter::snapshot::StorageDriver;

/// `--compression`: gzip (the default, readable everywhere), zstd (faster, smaller; needs a
/// recent runtime to pull), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LayerCompression {
    Gzip,
    Zstd,
    Uncompressed,
}

impl From<LayerCompression> for snapshotter::layer::Compression {
    fn from(c: LayerCompression) -> Self {
        match c {
            LayerCompression::Gzip => Self::Gzip,
            LayerCompression::Zstd => Self::Zstd,
            LayerCompression::Uncompressed => Self::Uncompressed,
        }
    }
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (`name:tag`); repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    file: Option<PathBuf>,
    /// Set a build-time variable (`NAME=VALUE`, or `NAME` to take it from the environment).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    build_args: Vec<String>,
    /// Build only up to this stage.
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Suppress the build output and print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Progress output: `auto`, `plain` or `quiet` (also from BUILDKIT_PROGRESS).
    #[arg(
        long,
        value_name = "TYPE",
        env = "BUILDKIT_PROGRESS",
        default_value = "auto"
    )]
    progress: String,
    /// Push the image to its registry after building (needs a `-t` name).
    #[arg(long)]
    push: bool,
    /// Require HTTPS and verify certificates for registries (`false` also allows plain HTTP).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// Target platform; only the platform kiln runs on is supported today.
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Compression of the layers the build writes.
    #[arg(long, value_enum, default_value_t = LayerCompression::Gzip)]
    compression: LayerCompression,
    /// Evaluate the build instead of running it: `check`, `outline` or `targets` (`build`, the
    /// default, builds); `METHOD,format=json` prints JSON, as buildx.
    #[arg(long, value_name = "METHOD")]
    call: Option<String>,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VAR`; repeatable.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` (`$SSH_AUTH_SOCK`) or `ID=SOCKET`;
    /// repeatable.
    #[arg(long = "ssh", value_name = "default|ID=SOCKET")]
    ssh: Vec<String>,
    /// Run RUN steps with an OCI runtime binary (`runc`, `crun`, or a path) instead of kiln's
    /// own sandbox.
    #[arg(long, value_name = "RUNTIME")]
    runtime: Option<PathBuf>,
    /// Shorthand for `--call=check`.
    #[arg(long, conflicts_with = "call")]
    check: bool,
    /// Output of `--call`: `human` (default) or `json`.
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// The build context directory.
    #[arg(value_name = "CONTEXT")]
    context: PathBuf,
}

/// Builds, or with `--call`/`--check` evaluates the build; only a build opens the store (`open`).
pub fn run(
    open: impl FnOnce() -> Result<Store, Failure>,
    root: &Path,
    storage_driver: Option<StorageDriver>,
    args: BuildArgs,
) -> CmdResult {
    let call = call::Call::from_args(args.call.as_deref(), args.check, args.format.as_deref())?;
    if call.method != call::Method::Build {
        return call::run(&args, call, root);
    }
    let store = &open()?;
    let tags = args
        .tags
        .iter()
        .map(|t| parse_ref(t))
        .collect::<Result<Vec<ImageRef>, _>>()?;
    if args.push && tags.is_empty() {
        return Err(Failure::Error(anyhow::anyhow!(
            "--push needs an image name: add `-t NAME[:TAG]`"
        )));
    }
    check_platform(args.platform.as_deref())?;
    let quiet = args.quiet
        || match args.progress.as_str() {
            "quiet" => true,
            "auto" | "plain" => false,
            other => {
                return Err(Failure::Error(anyhow::anyhow!(
                    "unsupported --progress `{other}`: use auto, plain or quiet"
                )));
            }
        };
    if args.context.as_os_str() == "-" {
        return Err(Failure::Error(anyhow::anyhow!(
            "a build context from stdin is not supported yet; pass a directory"
        )));
    }
    let (dockerfile_name, dockerfile) = read_dockerfile(&args.context, args.file.as_deref())?;
    let build_args = parse_build_args(&args.build_args)?;
    let source_date_epoch = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                anyhow::anyhow!("SOURCE_DATE_EPOCH must be a number of seconds, got `{s}`")
            })
        })
        .transpose()?;
    let registry_opts = RegistryOptions {
        tls_verify: args.tls_verify,
        ..RegistryOptions::default()
    };
    let mut run = RunSettings::default();
    for s in &args.secrets {
        run.secrets.add_flag(s)?;
    }
    for s in &args.ssh {
        run.ssh.add_flag(s)?;
    }
    if let Some(rt) = &args.runtime {
        run.backend = Backend::Oci(OciRuntime { binary: rt.clone() });
    }
    let req = BuildRequest {
        context: args.context.clone(),
        dockerfile_name: dockerfile_name.clone(),
        dockerfile: dockerfile.clone(),
        dockerfile_path: match args.file.as_deref() {
            Some(f) if f.as_os_str() == "-" => None,
            Some(f) => Some(f.to_path_buf()),
            None => Some(args.context.join("Dockerfile")),
        },
        build_args,
        target: args.target.clone(),
        tags: tags.clone(),
        registry: registry_opts.clone(),
        source_date_epoch,
        storage_driver,
        compression: args.compression.into(),
        run,
    };
    let reporter = PlainProgress {
        quiet,
        started: std::time::Instant::now(),
        lock: Mutex::new(()),
    };
    let out = solver::build(store, &req, &reporter)
        .map_err(|e| render_build_error(&e, &dockerfile_name, &dockerfile))?;
    if let Some(path) = &args.iidfile {
        fs_err::write(path, out.image_id.to_string())?;
    }
    if args.push {
        let image = store.image(&out.manifest)?;
        for tag in &tags {
            let observer = TransferLines {
                direction: Direction::Push,
                quiet,
            };
            let pushed = registry::push(store, &image, tag, &registry_opts, &observer)?;
            if !quiet {
                eprintln!(
                    "pushed {}: digest: {} size: {}",
                    tag.familiar(),
                    pushed.digest,
                    pushed.size
                );
            }
        }
    }
    println!("{}", out.image_id);
    Ok(())
}

fn check_platform(platform: Option<&str>) -> Result<(), Failure> {
    let host = Platform::host();
    match platform {
        Some(p) if !host.matches_slash_form(p) => Err(Failure::Error(anyhow::anyhow!(
            "--platform={p}: only the native platform ({}) can be built; cross-platform builds are not supported yet",
            host.slash_form()
        ))),
        _ => Ok(()),
    }
}

fn read_dockerfile(context: &Path, file: Option<&Path>) -> Result<(String, String), Failure> {
    if file.is_some_and(|f| f.as_os_str() == "-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| anyhow::anyhow!("reading the Dockerfile from stdin: {e}"))?;
        return Ok(("Dockerfile".to_owned(), text));
    }
    let path = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| context.join("Dockerfile"));
    let display = file.map_or_else(|| "Dockerfile".to_owned(), |f| f.display().to_string());
    let bytes = fs_err::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("cannot read Dockerfile: {} does not exist", path.display())
        }
        _ => anyhow::anyhow!("cannot read Dockerfile {}: {e}", path.display()),
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("Dockerfile {} is not valid UTF-8", path.display()))?;
    Ok((display, text))
}

/// `--build-arg NAME=VALUE`; a bare `NAME` takes the value from the environment and is
/// ignored when the environment has none (as Docker does).
fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for a in raw {
        match a.split_once('=') {
            Some(("", _)) => {
                return Err(Failure::Error(anyhow::anyhow!(
                    "invalid --build-arg `{a}`: the name is empty"
                )));
            }
            Some((k, v)) => {
                out.insert(k.to_owned(), v.to_owned());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

/// Dockerfile problems render as a snippet of the Dockerfile; others as one line.
fn render_build_error(e: &BuildError, name: &str, source: &str) -> Failure {
    match e {
        BuildError::Dockerfile(diags) => Failure::Rendered(diags.render(name, source)),
        BuildError::Step {
            span,
            instruction,
            source: cause,
        } => {
            let keyword = instruction
                .split_whitespace()
                .next()
                .unwrap_or("step")
                .to_ascii_uppercase();
            let message = format!("{keyword} failed: {}", super::chain_of(cause));
            Failure::Rendered(frontend::diagnostic::render_snippet(
                "error", &message, name, source, *span, None, None,
            ))
        }
        BuildError::Context(ContextError::InvalidIgnoreFile {
            name,
            text,
            diagnostics,
        }) => Failure::Rendered(diagnostics.render(name, text)),
        other => Failure::Rendered(format!("error: {}\n", super::chain_of(other))),
    }
}

/// Line-based progress on stderr: `#3 [2/4] COPY app /bin/ 0.1s`.
struct PlainProgress {
    quiet: bool,
    started: std::time::Instant,
    lock: Mutex<()>,
}

impl Reporter for PlainProgress {
    fn event(&self, event: Event) {
        if self.quiet {
            return;
        }
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut err = std::io::stderr().lock();
        let _ = match event {
            Event::StepStarted { step, text } => {
                let stage = if step.stage.is_empty() {
                    String::new()
                } else {
                    format!("{} ", step.stage)
                };
                writeln!(
                    err,
                    "#{} [{stage}{}/{}] {}",
                    step.index, step.index, step.total, text
                )
            }
            Event::StepFinished { step, elapsed } => {
                writeln!(err, "#{} DONE {:.1}s", step.index, elapsed.as_secs_f64())
            }
            Event::StepOutput {
                step,
                elapsed,
                line,
                ..
            } => writeln!(err, "#{} {:.3} {line}", step.index, elapsed.as_secs_f64()),
            Event::Pulling { reference } => writeln!(err, "pulling {reference}"),
            Event::Exported { image_id, manifest } => writeln!(
                err,
                "exported manifest {manifest}\nwriting image {image_id} done ({:.1}s)",
                self.started.elapsed().as_secs_f64()
            ),
            Event::Tagged { name } => writeln!(err, "naming to {name} done"),
        };
    }
}
