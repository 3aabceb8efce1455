//! `kiln build --call=outline|targets|check [--format=json]` and `--check`: evaluate a build
//! without running it, as `docker buildx build --call` does with BuildKit's subrequests.
//!
//! These read the Dockerfile, parse and plan it with the build's `-f`, `--target` and
//! `--build-arg`, and print what they found: never a step run, never the store opened.
//! stdout carries the result (a table, or BuildKit's JSON shapes: `outline.Outline`,
//! `targets.List`, `lint.LintResults`); Dockerfile errors go to stderr as rendered
//! diagnostics and exit 1.
//!
//! `check` parses and plans the Dockerfile and runs the build checks ([`frontend::checks`]):
//! each warning is rendered with its rule name, snippet and documentation link, then buildx's
//! `Check complete, ...` line. Warnings exit 0 unless `# check=error=true` (or
//! `BUILDKIT_DOCKERFILE_CHECK=error=true`) makes them fail the check; Dockerfile errors and
//! malformed check settings exit 1.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use serde::Serialize;

use super::{BuildArgs, parse_build_args, read_dockerfile};
use crate::cli::{CmdResult, Failure};
use crate::store::Store;
use frontend::checks::{self, CheckOptions, CheckWarning};
use frontend::span::line_column;
use frontend::{Diagnostic, Diagnostics, Dockerfile, Location, PlanOptions, Severity, Span};

/// What `--call` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Build the image (no `--call`, or `--call=build`).
    Build,
    /// Parse, plan and lint.
    Check,
    /// The build args, secrets and SSH sockets the target needs.
    Outline,
    /// The stages `--target` can select.
    Targets,
}

/// How a call prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// A `--call` request, read from `--call`, `--check` and `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    pub format: Format,
}

impl Call {
    /// Reads `--call=METHOD[,format=FORMAT]` (buildx's syntax), `--check` and `--format`.
    pub fn from_args(
        call: Option<&str>,
        check: bool,
        format: Option<&str>,
    ) -> Result<Self, Failure> {
        let mut method = if check { Method::Check } else { Method::Build };
        let mut format_field = None;
        if let Some(value) = call {
            let mut fields = value.split(',').map(str::trim);
            method = match fields.next().unwrap_or("") {
                "build" => Method::Build,
                "check" | "lint" => Method::Check,
                "outline" => Method::Outline,
                "targets" => Method::Targets,
                other => {
                    return Err(usage(format!(
                        "unknown --call method `{other}`: use build, check, outline or targets"
                    )));
                }
            };
            for field in fields {
                match field.split_once('=') {
                    Some(("format", f)) => format_field = Some(f),
                    _ => {
                        return Err(usage(format!(
                            "invalid --call option `{field}`: only `format=json` is supported"
                        )));
                    }
                }
            }
        }
        let format = match format.or(format_field) {
            None | Some("" | "human") => Format::Human,
            Some("json") => Format::Json,
            Some(other) => {
                return Err(usage(format!(
                    "unknown --format `{other}`: use human or json"
                )));
            }
        };
        if method == Method::Build && format == Format::Json {
            return Err(usage(
                "--format needs --call=check, outline or targets (or --check)".to_owned(),
            ));
        }
        Ok(Self { method, format })
    }
}

fn usage(message: String) -> Failure {
    Failure::Error(anyhow::anyhow!(message))
}

/// Runs a call (any method but [`Method::Build`]).
pub fn run(args: &BuildArgs, call: Call, root: &Path) -> CmdResult {
    let (name, source) = read_dockerfile(&args.context, args.file.as_deref())?;
    let opts = PlanOptions {
        build_args: parse_build_args(&args.build_args)?,
        automatic_args: crate::solver::automatic_args(),
        target: args.target.clone(),
    };
    let parsed = frontend::parse(&source);
    match call.method {
        // The caller builds; there is nothing to evaluate.
        Method::Build => Ok(()),
        Method::Outline => {
            let df = parsed.map_err(|d| rendered(&d, &name, &source))?;
            let outline =
                frontend::outline(&df, &source, &opts).map_err(|d| rendered(&d, &name, &source))?;
            match call.format {
                Format::Human => print!("{}", outline_table(&outline)),
                Format::Json => print_json(&OutlineJson::new(&outline, &source))?,
            }
            Ok(())
        }
        Method::Targets => {
            let df = parsed.map_err(|d| rendered(&d, &name, &source))?;
            let targets = frontend::targets(&df, &source);
            match call.format {
                Format::Human => print!("{}", targets_table(&targets)),
                Format::Json => print_json(&TargetsJson::new(&targets, &source))?,
            }
            Ok(())
        }
        Method::Check => {
            let local = LocalImages::at(root);
            check(parsed, &opts, &name, &source, call.format, &local)
        }
    }
}

/// Images already in an existing store, for their ENV; `--call` never creates a store or pulls.
pub struct LocalImages(Option<Store>);

impl LocalImages {
    fn at(root: &Path) -> Self {
        let has_images = root.join("refs.json").is_file();
        Self(has_images.then(|| Store::open(root).ok()).flatten())
    }

    /// The `ENV` of a local image, `None` when it is not in the store.
    fn env(&self, reference: &str) -> Option<Vec<String>> {
        let store = self.0.as_ref()?;
        let r = crate::image::ImageRef::parse(reference).ok()?;
        let image = store.resolve(&r).ok()??;
        Some(image.config.config.env.unwrap_or_default())
    }
}

/// `check`: parse, plan (every stage is resolved, as BuildKit's lint looks at all of them when
/// no target is given) and run the build checks. Parse and plan errors, malformed check
/// settings, and warnings under `# check=error=true` fail the check.
fn check(
    parsed: Result<Dockerfile, Diagnostics>,
    opts: &PlanOptions,
    name: &str,
    source: &str,
    format: Format,
    local: &LocalImages,
) -> CmdResult {
    let planned = parsed.and_then(|df| frontend::plan(&df, opts).map(|_| df));
    let df = match planned {
        Ok(df) => df,
        Err(diags) => {
            if format == Format::Json {
                let error = diags.iter().find(|d| d.severity == Severity::Error);
                print_json(&LintJson::new(
                    name,
                    source,
                    &[],
                    error.map(|d| BuildErrorJson::at(d, source)),
                ))?;
            }
            return Err(rendered(&diags, name, source));
        }
    };
    let report = checks::check(
        &df,
        &CheckOptions {
            build_args: opts.build_args.clone(),
            // Base images' ENV comes from the store when the image is there already (nothing is
            // pulled); for other images UndefinedVar stays quiet (see `frontend::checks`).
            base_env: Some(&|reference: &str| local.env(reference)),
        },
    );
    let config_error = report
        .config_problems
        .iter()
        .find(|d| d.severity == Severity::Error);
    let failure = report.failure();
    let build_error = match (config_error, &failure) {
        (Some(d), _) => Some(BuildErrorJson::at(d, source)),
        (None, Some(e)) => Some(BuildErrorJson {
            message: e.to_string(),
            location: PbLocation { ranges: Vec::new() },
        }),
        (None, None) => None,
    };
    // Problems with the `# check=` settings are about the input: stderr.
    if !report.config_problems.is_empty() {
        let problems: Diagnostics = report.config_problems.iter().cloned().collect();
        eprint!("{}", problems.render(name, source));
    }
    match format {
        Format::Json => print_json(&LintJson::new(name, source, &report.warnings, build_error))?,
        Format::Human => print!("{}", warnings_text(&report.warnings, name, source)),
    }
    if let Some(d) = config_error {
        return Err(Failure::Error(anyhow::anyhow!(
            "invalid check settings: {}",
            d.message
        )));
    }
    match failure {
        Some(e) => Err(Failure::Error(anyhow::Error::new(e))),
        None => Ok(()),
    }
}

/// Each warning as the frontend renders it, with the rule's documentation link, then buildx's
/// summary line.
fn warnings_text(warnings: &[CheckWarning], name: &str, source: &str) -> String {
    let mut out = String::new();
    for w in warnings {
        let d = &w.diagnostic;
        out.push_str(&d.render(name, source));
        // Under the snippet, in its gutter: `   = see: https://...`.
        let (line, _) = line_column(source, d.span.start);
        let gutter = " ".repeat(line.to_string().len() + 2);
        let _ = writeln!(out, "{gutter}= see: {}\n", w.rule.url());
    }
    match warnings.len() {
        0 => out.push_str("Check complete, no warnings found.\n"),
        1 => out.push_str("Check complete, 1 warning has been found!\n"),
        n => {
            let _ = writeln!(out, "Check complete, {n} warnings have been found!");
        }
    }
    out
}

fn rendered(diags: &Diagnostics, name: &str, source: &str) -> Failure {
    Failure::Rendered(diags.render(name, source))
}

fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::Internal(anyhow::Error::new(e).context("encoding JSON")))?;
    println!("{text}");
    Ok(())
}

/// buildx's outline printout: a `TARGET:`/`DESCRIPTION:` block, then tables of build args,
/// secrets and SSH sockets, each followed by a blank line; empty parts are left out.
fn outline_table(o: &frontend::Outline) -> String {
    let mut out = String::new();
    if o.name.is_some() || o.description.is_some() {
        let name = o
            .name
            .as_ref()
            .map_or_else(|| "(default)".to_owned(), |n| n.as_str().to_owned());
        let mut rows = vec![vec!["TARGET:".to_owned(), name]];
        if let Some(d) = &o.description {
            rows.push(vec!["DESCRIPTION:".to_owned(), d.clone()]);
        }
        out.push_str(&aligned(&rows, 1));
        out.push('\n');
    }
    if !o.args.is_empty() {
        let mut rows = vec![cells(["BUILD ARG", "VALUE", "DESCRIPTION"])];
        rows.extend(o.args.iter().map(|a| {
            cells([
                a.name.as_str(),
                a.value.as_deref().unwrap_or(""),
                a.description.as_deref().unwrap_or(""),
            ])
        }));
        out.push_str(&aligned(&rows, 3));
        out.push('\n');
    }
    for (title, mounts) in [("SECRET", &o.secrets), ("SSH", &o.ssh)] {
        if mounts.is_empty() {
            continue;
        }
        let mut rows = vec![cells([title, "REQUIRED"])];
        rows.extend(
            mounts
                .iter()
                .map(|m| cells([m.id.as_str(), if m.required { "true" } else { "" }])),
        );
        out.push_str(&aligned(&rows, 3));
        out.push('\n');
    }
    out
}

/// buildx's targets printout: `TARGET  DESCRIPTION`, the default one marked `(default)`.
fn targets_table(targets: &[frontend::Target]) -> String {
    let mut rows = vec![cells(["TARGET", "DESCRIPTION"])];
    rows.extend(targets.iter().map(|t| {
        let name = match (&t.name, t.default) {
            (None, _) => "(default)".to_owned(),
            (Some(n), true) => format!("{n} (default)"),
            (Some(n), false) => n.as_str().to_owned(),
        };
        vec![name, t.description.clone().unwrap_or_default()]
    }));
    aligned(&rows, 1)
}

fn cells<const N: usize>(texts: [&str; N]) -> Vec<String> {
    texts.iter().map(|s| (*s).to_owned()).collect()
}

/// Go's `tabwriter.NewWriter(w, 0, 0, padding, ' ', 0)`, as buildx lays out these tables.
fn aligned(rows: &[Vec<String>], padding: usize) -> String {
    crate::cli::format::table_with(rows, 0, padding)
}

// BuildKit's JSON shapes. Field names and `omitempty` follow the Go types, so tools that read
// buildx's `--call ...,format=json` output read these.

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `pb.Location`: one range here, from the first character to just after the last one
/// (lines 1-based, characters 0-based, as BuildKit's `pb.Position`).
#[derive(Serialize)]
struct PbLocation {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ranges: Vec<PbRange>,
}

#[derive(Serialize)]
struct PbRange {
    start: PbPosition,
    end: PbPosition,
}

#[derive(Serialize)]
struct PbPosition {
    #[serde(skip_serializing_if = "is_zero")]
    line: u32,
    #[serde(skip_serializing_if = "is_zero")]
    character: u32,
}

impl PbLocation {
    fn of_span(span: Span, source: &str) -> Self {
        let position = |offset: usize| {
            let (line, column) = line_column(source, offset);
            PbPosition {
                line,
                character: column - 1,
            }
        };
        PbLocation {
            ranges: vec![PbRange {
                start: position(span.start),
                end: position(span.end),
            }],
        }
    }

    fn of(location: &Location, source: &str) -> Self {
        Self::of_span(location.span, source)
    }
}

fn base64(source: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(source)
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// `outline.Outline`.
#[derive(Serialize)]
struct OutlineJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<ArgJson<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<MountJson<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ssh: Vec<MountJson<'a>>,
    sources: Vec<String>,
}

#[derive(Serialize)]
struct ArgJson<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    location: PbLocation,
}

#[derive(Serialize)]
struct MountJson<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    required: bool,
    location: PbLocation,
}

impl<'a> OutlineJson<'a> {
    fn new(o: &'a frontend::Outline, source: &str) -> Self {
        let mounts = |list: &'a [frontend::OutlineMount]| {
            list.iter()
                .map(|m| MountJson {
                    name: &m.id,
                    required: m.required,
                    location: PbLocation::of(&m.location, source),
                })
                .collect()
        };
        Self {
            name: o.name.as_ref().map(frontend::StageName::as_str),
            description: non_empty(o.description.as_deref()),
            args: o
                .args
                .iter()
                .map(|a| ArgJson {
                    name: &a.name,
                    description: non_empty(a.description.as_deref()),
                    value: non_empty(a.value.as_deref()),
                    location: PbLocation::of(&a.location, source),
                })
                .collect(),
            secrets: mounts(&o.secrets),
            ssh: mounts(&o.ssh),
            sources: vec![base64(source)],
        }
    }
}

/// `targets.List`.
#[derive(Serialize)]
struct TargetsJson<'a> {
    targets: Vec<TargetJson<'a>>,
    sources: Vec<String>,
}

#[derive(Serialize)]
struct TargetJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    default: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    base: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a str>,
    location: PbLocation,
}

impl<'a> TargetsJson<'a> {
    fn new(targets: &'a [frontend::Target], source: &str) -> Self {
        Self {
            targets: targets
                .iter()
                .map(|t| TargetJson {
                    name: t.name.as_ref().map(frontend::StageName::as_str),
                    default: t.default,
                    description: non_empty(t.description.as_deref()),
                    base: &t.base,
                    platform: non_empty(t.platform.as_deref()),
                    location: PbLocation::of(&t.location, source),
                })
                .collect(),
            sources: vec![base64(source)],
        }
    }
}

/// `lint.LintResults`.
#[derive(Serialize)]
struct LintJson {
    warnings: Vec<WarningJson>,
    sources: Vec<SourceInfoJson>,
    #[serde(rename = "buildError", skip_serializing_if = "Option::is_none")]
    build_error: Option<BuildErrorJson>,
}

/// `lint.Warning`.
#[derive(Serialize)]
struct WarningJson {
    #[serde(rename = "ruleName")]
    rule_name: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    detail: String,
    location: PbLocation,
}

/// `pb.SourceInfo`.
#[derive(Serialize)]
struct SourceInfoJson {
    filename: String,
    data: String,
    language: &'static str,
}

/// `lint.BuildError`.
#[derive(Serialize)]
struct BuildErrorJson {
    message: String,
    location: PbLocation,
}

impl LintJson {
    fn new(
        name: &str,
        source: &str,
        warnings: &[CheckWarning],
        build_error: Option<BuildErrorJson>,
    ) -> Self {
        Self {
            warnings: warnings
                .iter()
                .map(|w| WarningJson {
                    rule_name: w.rule.name(),
                    description: w.rule.description(),
                    url: w.rule.url(),
                    detail: w.diagnostic.message.clone(),
                    location: PbLocation::of_span(w.diagnostic.span, source),
                })
                .collect(),
            sources: vec![SourceInfoJson {
                filename: name.to_owned(),
                data: base64(source),
                language: "Dockerfile",
            }],
            build_error,
        }
    }
}

impl BuildErrorJson {
    /// BuildKit stops at its first error; kiln renders them all on stderr and puts the first
    /// here.
    fn at(d: &Diagnostic, source: &str) -> Self {
        Self {
            message: d.message.clone(),
            location: PbLocation::of_span(d.span, source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_values_like_buildx() {
        let call = Call::from_args(Some("outline,format=json"), false, None).unwrap();
        assert_eq!((call.method, call.format), (Method::Outline, Format::Json));
        let call = Call::from_args(None, true, Some("json")).unwrap();
        assert_eq!((call.method, call.format), (Method::Check, Format::Json));
        let call = Call::from_args(Some("targets"), false, None).unwrap();
        assert_eq!((call.method, call.format), (Method::Targets, Format::Human));
        assert_eq!(
            Call::from_args(None, false, None).unwrap().method,
            Method::Build
        );
        assert!(Call::from_args(Some("outlines"), false, None).is_err());
        assert!(Call::from_args(Some("outline,format=yaml"), false, None).is_err());
        assert!(Call::from_args(None, false, Some("json")).is_err());
    }

    #[test]
    fn tables_align_like_tabwriter() {
        let rows = vec![cells(["TARGET", "DESCRIPTION"]), cells(["a (default)", ""])];
        assert_eq!(aligned(&rows, 1), "TARGET      DESCRIPTION\na (default)\n");
    }
}
