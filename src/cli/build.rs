//! `kiln build [OPTIONS] CONTEXT`: Docker's `build` flags that the engine supports today, and
//! `--call`/`--check` (see [`call`]), which evaluate the build without running it.

mod call;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::Args;

use super::progress::Progress;
use super::transfer::{Direction, TransferLines};
use super::{CmdResult, Failure, parse_ref};
use crate::cache::share;
use crate::image::{ImageRef, Platform};
use crate::registry::{self, RegistryOptions};
use crate::sandbox::Backend;
use crate::sandbox::oci::OciRuntime;
use crate::solver::context::{ContextError, named, stdin};
use crate::solver::output::{self, BuildMetadata, OutputSpec};
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
    /// Progress output: `auto`, `tty`, `plain`, `rawjson` or `quiet` (also from
    /// BUILDKIT_PROGRESS); `auto` is tty on a terminal, else plain.
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
    /// Output destination (`type=TYPE[,KEY=VALUE...]`): `image[,name=N][,push=true]`,
    /// `registry`, `oci,dest=F.tar`, `docker,dest=F.tar`, `local,dest=DIR`, `tar,dest=F`;
    /// `-o DIR` is `type=local,dest=DIR`, `-o -` a tar of the filesystem on stdout. Repeatable.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATH|type=TYPE[,KEY=VALUE]"
    )]
    outputs: Vec<String>,
    /// Write build result metadata (image digests and names) to this JSON file.
    #[arg(long, value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// Set metadata for the image (`KEY=VALUE`); repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Do not use the build cache (every step runs; results are still recorded).
    #[arg(long)]
    no_cache: bool,
    /// Do not use the build cache for these stages (names or indexes; comma-separated or
    /// repeated).
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    no_cache_filter: Vec<String>,
    /// Always look base images up in their registry (pull what changed).
    #[arg(long)]
    pull: bool,
    /// Explain in each step's log why its result was not found in the cache.
    #[arg(long)]
    debug_cache: bool,
    /// Use an exported build cache: `type=registry,ref=REF`, `type=local,src=DIR[,tag=TAG]`,
    /// or a bare registry reference; repeatable (the first cache with a step wins).
    #[arg(
        long = "cache-from",
        value_name = "type=registry,ref=REF|type=local,src=DIR"
    )]
    cache_from: Vec<String>,
    /// Export the build cache: `type=registry,ref=REF` or `type=local,dest=DIR[,tag=TAG]`,
    /// with `mode=min` (the final image's steps, the default) or `mode=max` (every step), and
    /// `ignore-error=true`; repeatable.
    #[arg(
        long = "cache-to",
        value_name = "type=registry,ref=REF|type=local,dest=DIR"
    )]
    cache_to: Vec<String>,
    /// An additional named context (`NAME=DIR` or `NAME=docker-image://REF`); repeatable.
    #[arg(long = "build-context", value_name = "NAME=SOURCE")]
    build_contexts: Vec<String>,
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
        .map(|t| parse_ref(t).map(with_default_tag))
        .collect::<Result<Vec<ImageRef>, _>>()?;
    let outputs = parse_outputs(&args.outputs, &tags, args.push)?;
    let cache_from = args
        .cache_from
        .iter()
        .map(|v| share::parse_cache_from(v))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_to = args
        .cache_to
        .iter()
        .map(|v| share::parse_cache_to(v))
        .collect::<Result<Vec<_>, _>>()?;
    check_platform(args.platform.as_deref())?;
    let reporter = Progress::stderr(&args.progress, args.quiet)?;
    let quiet = reporter.is_quiet();
    let scratch = solver::export::scratch_dir(store);
    let source = BuildSource::open(&args, &scratch)?;
    let (dockerfile_name, dockerfile) = match &source.dockerfile {
        Some(text) => ("Dockerfile".to_owned(), text.clone()),
        None => read_dockerfile(&source.context, source.file.as_deref())?,
    };
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
    let imported = (!cache_from.is_empty()).then(|| {
        let (imported, warnings) = share::ImportedCache::load(&cache_from, &registry_opts);
        for w in warnings {
            eprintln!("WARNING: {w}");
        }
        std::sync::Arc::new(imported)
    });
    let mut named_contexts = BTreeMap::new();
    for flag in &args.build_contexts {
        let (name, ctx) = named::parse(flag)?;
        named_contexts.insert(name, ctx);
    }
    let req = BuildRequest {
        context: source.context.clone(),
        dockerfile_name: dockerfile_name.clone(),
        dockerfile: dockerfile.clone(),
        dockerfile_path: source.dockerfile_path(),
        build_args,
        target: args.target.clone(),
        tags: outputs.store_tags(),
        keep_untagged: outputs.specs.is_empty()
            || outputs
                .specs
                .iter()
                .any(|s| matches!(s, OutputSpec::Image { .. })),
        registry: registry_opts.clone(),
        source_date_epoch,
        storage_driver,
        compression: args.compression.into(),
        run,
        labels: parse_labels(&args.labels),
        named_contexts,
        cache: crate::cache::CacheSettings {
            no_cache: args.no_cache,
            no_cache_stages: args
                .no_cache_filter
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
            explain: args.debug_cache,
            imported,
        },
        pull: args.pull,
    };
    let out = solver::build(store, &req, &reporter)
        .map_err(|e| render_build_error(&e, &dockerfile_name, &dockerfile))?;
    source.remove()?;
    if let Some(path) = &args.iidfile {
        fs_err::write(path, out.image_id.to_string())?;
    }
    let image = store.image(&out.manifest)?;
    let mut exported = outputs.specs.is_empty().then(|| out.manifest.clone());
    for spec in &outputs.specs {
        let written = output::write(store, &image, spec, &scratch).map_err(|e| {
            anyhow::Error::new(e).context(format!("exporting the {} output", spec.kind()))
        })?;
        if exported.is_none() && spec.is_image() {
            exported = written.manifest;
        }
    }
    // Every name in one push: blobs once per repository, the manifest at each name.
    let names: Vec<_> = outputs.push_names().into_iter().cloned().collect();
    if !names.is_empty() {
        let observer = TransferLines {
            direction: Direction::Push,
            quiet,
        };
        let pushed = registry::push_all(store, &image, &names, &registry_opts, &observer)?;
        if !quiet {
            for tag in &names {
                eprintln!(
                    "pushed {}: digest: {} size: {}",
                    tag.familiar(),
                    pushed.digest,
                    pushed.size
                );
            }
        }
    }
    for spec in &cache_to {
        export_cache(store, &out.cache, spec, &registry_opts, quiet)?;
    }
    if let Some(path) = &args.metadata_file {
        let meta = BuildMetadata {
            image: exported.map(|m| (m, out.image_id)),
            names: outputs.image_names(),
            platform: crate::image::Platform {
                architecture: image.config.architecture.clone(),
                os: image.config.os.clone(),
                os_version: image.config.os_version.clone(),
                os_features: Vec::new(),
                variant: image.config.variant.clone(),
            },
        };
        meta.write(path)?;
    }
    // stdout carries the image ID, unless an output streams its bytes there.
    if !outputs.specs.iter().any(OutputSpec::writes_stdout) {
        println!("{}", out.image_id);
    }
    Ok(())
}

/// Export the build cache as `spec` says; with `ignore-error=true` a failure is a warning.
fn export_cache(
    store: &Store,
    used: &share::UsedRecords,
    spec: &share::CacheExport,
    opts: &RegistryOptions,
    quiet: bool,
) -> Result<(), Failure> {
    let observer = TransferLines {
        direction: Direction::Push,
        quiet,
    };
    match share::export(store, used, spec, opts, &observer) {
        Ok(done) => {
            if !quiet {
                eprintln!(
                    "exported cache to {}: {} records, {} layers ({} sent), manifest {}",
                    spec.dest, done.records, done.layers, done.sent, done.manifest.digest
                );
                if done.missing > 0 {
                    eprintln!(
                        "WARNING: {} records were left out: their layers are no longer in the store",
                        done.missing
                    );
                }
            }
            Ok(())
        }
        Err(e) if spec.ignore_error => {
            eprintln!("WARNING: {:#}", anyhow::Error::new(e));
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e).into()),
    }
}

/// The outputs of a build: `--output`s with `-t` names and `--push` applied.
#[derive(Debug)]
struct Outputs {
    specs: Vec<OutputSpec>,
    /// `-t` names when there is no `--output` (the image stays in the store).
    default_names: Vec<ImageRef>,
    default_push: bool,
}

impl Outputs {
    /// Names set in the store: those of `image` outputs (or the `-t` names without outputs).
    fn store_tags(&self) -> Vec<ImageRef> {
        if self.specs.is_empty() {
            return self.default_names.clone();
        }
        let mut names: Vec<ImageRef> = Vec::new();
        for s in &self.specs {
            if let OutputSpec::Image { names: n, .. } = s {
                for r in n {
                    if !names.contains(r) {
                        names.push(r.clone());
                    }
                }
            }
        }
        names
    }

    /// Names to push.
    fn push_names(&self) -> Vec<&ImageRef> {
        if self.specs.is_empty() {
            return if self.default_push {
                self.default_names.iter().collect()
            } else {
                Vec::new()
            };
        }
        let mut out: Vec<&ImageRef> = Vec::new();
        for s in &self.specs {
            if let OutputSpec::Image { names, push: true } = s {
                for r in names {
                    if !out.contains(&r) {
                        out.push(r);
                    }
                }
            }
        }
        out
    }

    /// Every name an image output carries (for `--metadata-file` `image.name`).
    fn image_names(&self) -> Vec<ImageRef> {
        if self.specs.is_empty() {
            return self.default_names.clone();
        }
        let mut names: Vec<ImageRef> = Vec::new();
        for r in self.specs.iter().flat_map(|s| s.names()) {
            if !names.contains(r) {
                names.push(r.clone());
            }
        }
        names
    }
}

/// `--output`s as buildx sets them up: `-t` names replace the names of `image`, `oci` and
/// `docker` outputs; `--push` adds `type=registry`; checks that need no build come first.
fn parse_outputs(raw: &[String], tags: &[ImageRef], push: bool) -> Result<Outputs, Failure> {
    let mut specs = raw
        .iter()
        .map(|o| output::spec::parse(o))
        .collect::<Result<Vec<_>, _>>()?;
    if push {
        specs.push(OutputSpec::Image {
            names: Vec::new(),
            push: true,
        });
    }
    for s in &mut specs {
        if s.is_image() {
            if tags.is_empty() {
                let normalized = s.names().iter().cloned().map(with_default_tag).collect();
                s.set_names(normalized);
            } else {
                s.set_names(tags.to_vec());
            }
        }
    }
    // A lone `--push` keeps today's meaning: the image is in the store under its tags too.
    let (specs, default_push) = match specs.as_slice() {
        [OutputSpec::Image { push: true, .. }] if raw.is_empty() => (Vec::new(), true),
        _ => (specs, false),
    };
    let needs_name = specs
        .iter()
        .any(|s| matches!(s, OutputSpec::Image { names, push: true } if names.is_empty()));
    if needs_name || (default_push && tags.is_empty()) {
        return Err(Failure::Error(anyhow::anyhow!(
            "tag is needed when pushing to registry: add `-t NAME[:TAG]` (or name= in --output)"
        )));
    }
    output::validate(&specs)?;
    if specs.iter().any(OutputSpec::writes_stdout) && std::io::stdout().is_terminal() {
        let kind = specs
            .iter()
            .find(|s| s.writes_stdout())
            .map_or("tar", OutputSpec::kind);
        return Err(output::OutputError::StdoutIsTerminal {
            kind: kind.to_owned(),
        }
        .into());
    }
    Ok(Outputs {
        specs,
        default_names: tags.to_vec(),
        default_push,
    })
}

/// `NAME` means `NAME:latest`, as Docker normalizes names it writes.
fn with_default_tag(r: ImageRef) -> ImageRef {
    if r.tag().is_none() && r.digest().is_none() {
        r.with_tag(crate::image::reference::DEFAULT_TAG)
            .expect("`latest` is a valid tag")
    } else {
        r
    }
}

/// `--label KEY=VALUE`; a bare `KEY` is a label with an empty value (buildx `listToMap`).
fn parse_labels(raw: &[String]) -> BTreeMap<String, String> {
    raw.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

/// Where the build's context and Dockerfile come from: a directory, or stdin (`kiln build -`:
/// a tar context, or a Dockerfile with an empty context).
struct BuildSource {
    context: PathBuf,
    /// `-f`, resolved (inside the extracted tree for a stdin context).
    file: Option<PathBuf>,
    /// The Dockerfile text when it came from stdin.
    dockerfile: Option<String>,
    /// Keeps an extracted stdin context alive until the build is done.
    stdin: Option<stdin::StdinContext>,
}

impl BuildSource {
    fn open(args: &BuildArgs, scratch: &Path) -> Result<Self, Failure> {
        let file_is_stdin = args.file.as_deref().is_some_and(|f| f.as_os_str() == "-");
        if args.context.as_os_str() != "-" {
            return Ok(Self {
                context: args.context.clone(),
                file: args.file.clone(),
                dockerfile: None,
                stdin: None,
            });
        }
        if file_is_stdin {
            return Err(Failure::Error(anyhow::anyhow!(
                "invalid argument: can't use stdin for both build context and dockerfile"
            )));
        }
        match stdin::read(std::io::stdin(), scratch)? {
            stdin::StdinContent::Context(ctx) => Ok(Self {
                context: ctx.path().to_path_buf(),
                // `-f` names a file inside the archive.
                file: args
                    .file
                    .as_deref()
                    .map(|f| ctx.path().join(f.strip_prefix("/").unwrap_or(f))),
                dockerfile: None,
                stdin: Some(ctx),
            }),
            stdin::StdinContent::Dockerfile(text) => {
                let ctx = stdin::empty(scratch)?;
                Ok(Self {
                    context: ctx.path().to_path_buf(),
                    file: None,
                    dockerfile: Some(text),
                    stdin: Some(ctx),
                })
            }
        }
    }

    /// Where the Dockerfile is on disk, to find its `<name>.dockerignore`.
    fn dockerfile_path(&self) -> Option<PathBuf> {
        if self.dockerfile.is_some() {
            return None;
        }
        match self.file.as_deref() {
            Some(f) if f.as_os_str() == "-" => None,
            Some(f) => Some(f.to_path_buf()),
            None => Some(self.context.join("Dockerfile")),
        }
    }

    /// Remove an extracted stdin context.
    fn remove(self) -> Result<(), Failure> {
        if let Some(ctx) = self.stdin {
            ctx.remove()?;
        }
        Ok(())
    }
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
