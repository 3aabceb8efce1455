//! `kiln build --call=outline|targets|check` and `--check`: human and JSON output through the
//! binary, exit codes, and that evaluating a build never touches the store.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness;
use crate::support::{Run, kiln, write_files};

const DOCKERFILE: &str = "\
# syntax=docker/dockerfile:1

# ALPINE_VERSION the Alpine release to build on
ARG ALPINE_VERSION=3.20
ARG UNUSED_GLOBAL=x

# builder compiles the app
FROM alpine:${ALPINE_VERSION} AS builder
# GOFLAGS flags for go build
ARG GOFLAGS=-trimpath
RUN --mount=type=secret,id=netrc,required=true --mount=type=ssh make

# docs builds the manual
FROM scratch AS docs
ARG DOCS_FORMAT=html
RUN --mount=type=secret,id=docs-token make docs

# release is what ships
FROM scratch AS release
# VERSION the version stamped into the binary
ARG VERSION
COPY --from=builder /out/app /app
";

fn context(dockerfile: &str) -> tempfile::TempDir {
    let ctx = harness::tempdir();
    write_files(ctx.path(), &[("Dockerfile", dockerfile), ("a.txt", "a")]);
    ctx
}

/// `kiln build ARGS CONTEXT` against a store root that does not exist yet.
fn call(ctx: &Path, args: &[&str]) -> (Run, tempfile::TempDir) {
    let root = harness::tempdir();
    let store = root.path().join("store");
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    all.push(ctx.to_str().unwrap());
    let out = kiln(&store, &all);
    assert!(
        !store.exists(),
        "`kiln build {}` created the store",
        args.join(" ")
    );
    (out, root)
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.stdout))
}

fn decode(source: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(source.as_str().expect("base64 string"))
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn outline_human() {
    let ctx = context(DOCKERFILE);
    let (out, _root) = call(
        ctx.path(),
        &["--call=outline", "--build-arg", "VERSION=1.2.3"],
    );
    let out = out.ok();
    assert_eq!(
        out.stdout,
        "\
TARGET:      release
DESCRIPTION: is what ships

BUILD ARG        VALUE       DESCRIPTION
ALPINE_VERSION   3.20        the Alpine release to build on
GOFLAGS          -trimpath   flags for go build
VERSION          1.2.3       the version stamped into the binary

SECRET   REQUIRED
netrc    true

SSH       REQUIRED
default

"
    );

    // --target prunes: only what `docs` needs.
    let (out, _root) = call(ctx.path(), &["--call", "outline", "--target", "docs"]);
    assert_eq!(
        out.ok().stdout,
        "\
TARGET:      docs
DESCRIPTION: builds the manual

BUILD ARG     VALUE   DESCRIPTION
DOCS_FORMAT   html

SECRET       REQUIRED
docs-token

"
    );
}

#[test]
fn outline_json() {
    let ctx = context(DOCKERFILE);
    let (out, _root) = call(
        ctx.path(),
        &["--call=outline,format=json", "--build-arg", "VERSION=1.2.3"],
    );
    let v = json_of(&out.ok());
    assert_eq!(v["name"], "release");
    assert_eq!(v["description"], "is what ships");
    assert_eq!(
        v["args"][0],
        json!({
            "name": "ALPINE_VERSION",
            "description": "the Alpine release to build on",
            "value": "3.20",
            "location": {"ranges": [{"start": {"line": 4, "character": 4}, "end": {"line": 4, "character": 23}}]}
        })
    );
    let names: Vec<&str> = v["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ALPINE_VERSION", "GOFLAGS", "VERSION"]);
    assert_eq!(v["args"][2]["value"], "1.2.3");
    assert_eq!(v["secrets"][0]["name"], "netrc");
    assert_eq!(v["secrets"][0]["required"], true);
    assert_eq!(
        v["secrets"][0]["location"]["ranges"][0]["start"]["line"],
        11
    );
    assert_eq!(v["secrets"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["ssh"],
        json!([{"name": "default", "location": v["ssh"][0]["location"]}])
    );
    assert!(v["ssh"][0].get("required").is_none(), "omitempty like Go");
    assert_eq!(decode(&v["sources"][0]), DOCKERFILE);

    // `--format=json` is the same as `,format=json`.
    let (again, _root) = call(
        ctx.path(),
        &[
            "--call=outline",
            "--format=json",
            "--build-arg",
            "VERSION=1.2.3",
        ],
    );
    assert_eq!(json_of(&again.ok()), v);
}

#[test]
fn targets_human_and_json() {
    let ctx = context(&format!("{DOCKERFILE}\nFROM release\nCOPY a.txt /\n"));
    let (out, _root) = call(ctx.path(), &["--call=targets"]);
    assert_eq!(
        out.ok().stdout,
        "\
TARGET    DESCRIPTION
builder   compiles the app
docs      builds the manual
release   is what ships
(default)
"
    );

    let (out, _root) = call(ctx.path(), &["--call=targets,format=json"]);
    let v = json_of(&out.ok());
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 4);
    assert_eq!(
        targets[0],
        json!({
            "name": "builder",
            "description": "compiles the app",
            "base": "alpine:${ALPINE_VERSION}",
            "location": {"ranges": [{"start": {"line": 8}, "end": {"line": 8, "character": 40}}]}
        })
    );
    assert_eq!(
        targets[3],
        json!({"default": true, "base": "release", "location": targets[3]["location"]})
    );
    assert_eq!(v["sources"].as_array().unwrap().len(), 1);

    // A named last stage is marked in the table.
    let ctx = context(DOCKERFILE);
    let (out, _root) = call(ctx.path(), &["--call=targets"]);
    assert!(
        out.ok()
            .stdout
            .ends_with("release (default) is what ships\n"),
        "default marker"
    );
}

#[test]
fn calls_respect_dockerfile_flag_and_report_errors() {
    let ctx = context("FROM scratch\n");
    write_files(
        ctx.path(),
        &[(
            "build/app.Dockerfile",
            "FROM scratch AS app\nARG FLAVOUR=plain\n",
        )],
    );
    let file = ctx.path().join("build/app.Dockerfile");
    let (out, _root) = call(
        ctx.path(),
        &["--call=outline", "-f", file.to_str().unwrap()],
    );
    assert!(out.ok().stdout.contains("\nFLAVOUR     plain\n"));

    // Dockerfile errors: rendered on stderr, nothing on stdout, exit 1.
    let bad = context("FROM scratch\nCOPPY a.txt /\n");
    for method in ["--call=outline", "--call=targets", "--check"] {
        let (out, _root) = call(bad.path(), &[method]);
        let out = out.fails_with(1);
        assert!(
            out.stderr
                .contains("error[F0101]: unknown instruction `COPPY`")
                && out.stderr.contains("--> Dockerfile:2:1"),
            "{method}: {}",
            out.stderr
        );
        if method != "--check" {
            assert_eq!(out.stdout, "", "{method}");
        }
    }
    let (out, _root) = call(ctx.path(), &["--call=outline", "--target", "nope"]);
    assert!(out.fails_with(1).stderr.contains("error[F0203]"));
    let (out, _root) = call(ctx.path(), &["--call=explain"]);
    assert!(out.fails_with(1).stderr.contains("unknown --call method"));
}

#[test]
fn check_exit_codes_and_json() {
    // A clean Dockerfile, with and without `# check=error=true`.
    for text in [
        "FROM scratch\nCOPY a.txt /\n",
        "# check=error=true\nFROM scratch\nCOPY a.txt /\n",
    ] {
        let ctx = context(text);
        let (out, _root) = call(ctx.path(), &["--check"]);
        assert_eq!(out.ok().stdout, "Check complete, no warnings found.\n");
        let (out, _root) = call(ctx.path(), &["--call=check,format=json"]);
        let v = json_of(&out.ok());
        assert_eq!(v["warnings"], json!([]));
        assert!(v.get("buildError").is_none());
        assert_eq!(v["sources"][0]["filename"], "Dockerfile");
        assert_eq!(decode(&v["sources"][0]["data"]), text);
    }

    // A planning error (a stage cycle) fails the check; JSON carries it as BuildKit's buildError.
    let ctx = context("FROM scratch AS a\nCOPY --from=b /x /x\nFROM a AS b\n");
    let (out, _root) = call(ctx.path(), &["--check", "--format=json"]);
    let out = out.fails_with(1);
    let v = json_of(&out);
    assert_eq!(v["warnings"], json!([]));
    let error = &v["buildError"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("circular dependency"),
        "{error}"
    );
    assert!(
        error["location"]["ranges"][0]["start"]["line"]
            .as_u64()
            .is_some()
    );
    assert!(out.stderr.contains("error[F0205]"), "{}", out.stderr);
}

/// Every file under `root` with its size and modification time.
fn snapshot(root: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            let name = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string();
            out.insert(name, (meta.len(), meta.modified().unwrap()));
        }
    }
    out
}

#[test]
fn calls_never_write_to_the_store() {
    let ctx = context("FROM scratch\nCOPY a.txt /\n");
    let root = harness::tempdir();
    let ctx_path = ctx.path().to_str().unwrap();
    kiln(root.path(), &["build", "-q", "-t", "built", ctx_path]).ok();
    let before = snapshot(root.path());
    assert!(before.keys().any(|k| k.starts_with("blobs/sha256/")));

    for args in [
        &["--call=outline"][..],
        &["--call=targets", "--format=json"],
        &["--check"],
        &["--call=check", "-t", "other"],
    ] {
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        all.push(ctx_path);
        kiln(root.path(), &all).ok();
        assert_eq!(snapshot(root.path()), before, "{args:?} changed the store");
    }
    assert_eq!(
        kiln(root.path(), &["images", "-q"])
            .ok()
            .stdout
            .lines()
            .count(),
        1,
        "no new images"
    );
}

#[test]
fn check_warnings_and_error_directive() {
    let text = "FROM scratch as Build\nCOPY a.txt /\n";
    let ctx = context(text);
    let (out, _root) = call(ctx.path(), &["--check"]);
    let out = out.ok();
    assert_eq!(
        out.stdout,
        "\
warning[FromAsCasing]: 'as' and 'FROM' keywords' casing do not match
  --> Dockerfile:1:14
   |
 1 | FROM scratch as Build
   |              ^^
   = help: write `AS`
   = see: https://docs.docker.com/go/dockerfile/rule/from-as-casing/

warning[StageNameCasing]: Stage name 'Build' should be lowercase
  --> Dockerfile:1:17
   |
 1 | FROM scratch as Build
   |                 ^^^^^
   = help: write `build`; stage names are compared without case
   = see: https://docs.docker.com/go/dockerfile/rule/stage-name-casing/

Check complete, 2 warnings have been found!
"
    );

    let (out, _root) = call(ctx.path(), &["--call=check", "--format=json"]);
    let v = json_of(&out.ok());
    assert_eq!(
        v["warnings"][0],
        json!({
            "ruleName": "FromAsCasing",
            "description": "The 'as' keyword should match the case of the 'from' keyword",
            "url": "https://docs.docker.com/go/dockerfile/rule/from-as-casing/",
            "detail": "'as' and 'FROM' keywords' casing do not match",
            "location": {"ranges": [{"start": {"line": 1, "character": 13}, "end": {"line": 1, "character": 15}}]}
        })
    );
    assert_eq!(v["warnings"][1]["ruleName"], "StageNameCasing");
    assert!(v.get("buildError").is_none());

    // Skipping a rule through the build arg, as BuildKit.
    let (out, _root) = call(
        ctx.path(),
        &[
            "--check",
            "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=skip=StageNameCasing",
        ],
    );
    assert!(
        out.ok()
            .stdout
            .ends_with("Check complete, 1 warning has been found!\n")
    );

    // `# check=error=true`: the same warnings fail the check.
    let ctx = context(&format!("# check=error=true\n{text}"));
    let (out, _root) = call(ctx.path(), &["--check"]);
    let out = out.fails_with(1);
    assert!(
        out.stdout
            .ends_with("Check complete, 2 warnings have been found!\n")
    );
    assert_eq!(
        out.stderr.trim_end(),
        "error: lint violation found for rules: StageNameCasing, FromAsCasing"
    );
    let (out, _root) = call(ctx.path(), &["--check", "--format=json"]);
    let v = json_of(&out.fails_with(1));
    assert_eq!(v["warnings"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["buildError"],
        json!({"message": "lint violation found for rules: StageNameCasing, FromAsCasing", "location": {}})
    );
}

#[test]
fn check_uses_the_env_of_base_images_already_in_the_store() {
    let root = harness::tempdir();
    let base = context("FROM scratch\nENV FOO=1\n");
    kiln(
        root.path(),
        &[
            "build",
            "-q",
            "-t",
            "base:env",
            base.path().to_str().unwrap(),
        ],
    )
    .ok();
    let app = context("FROM base:env\nLABEL a=$FOO b=$BAR\n");
    let out = kiln(
        root.path(),
        &["build", "--check", app.path().to_str().unwrap()],
    )
    .ok();
    assert!(
        out.stdout.contains("UndefinedVar") && out.stdout.contains("$BAR"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("variable '$FOO'"),
        "FOO comes from the base image: {}",
        out.stdout
    );
    assert_eq!(
        out.stdout.matches("warning[UndefinedVar]").count(),
        1,
        "{}",
        out.stdout
    );

    // An image that is not in the store is not pulled: the check stays quiet about its stage.
    let elsewhere = context("FROM not-here/base:1\nLABEL b=$BAR\n");
    let out = kiln(
        root.path(),
        &["build", "--check", elsewhere.path().to_str().unwrap()],
    )
    .ok();
    assert!(!out.stdout.contains("UndefinedVar"), "{}", out.stdout);
}
