//! Snapshot tests over `testdata/dockerfiles/{ok,err}`: every `ok` file must parse and
//! plan (the snapshot shows the syntax dump and the plan), every `err` file must fail
//! (the snapshot shows the rendered diagnostics). New files are picked up on their own.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use frontend::syntax::parse_ast;
use frontend::{ArgValue, BuildPlan, PlanOptions, StageBase, StepKind, parse, plan};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/dockerfiles")
        .join(kind);
    let mut files: Vec<PathBuf> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

fn name(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

fn summary(plan: &BuildPlan) -> String {
    let mut out = String::new();
    for stage in &plan.stages {
        let base = match &stage.base {
            StageBase::Scratch => "scratch".to_owned(),
            StageBase::Image { reference, .. } => format!("image {reference}"),
            StageBase::Stage(id) => format!("stage {}", id.0),
        };
        let name = stage.name.as_ref().map_or("-", |n| n.as_str());
        writeln!(
            out,
            "stage {} name={name} base={base} deps={:?} at {}:{}",
            stage.id.0,
            stage.dependencies.iter().map(|d| d.0).collect::<Vec<_>>(),
            stage.location.line,
            stage.location.column
        )
        .unwrap();
        for step in &stage.steps {
            let extra = match &step.kind {
                StepKind::Copy(c) => format!(
                    " [from={:?} sources={:?} inline={:?} dest={}]",
                    c.from,
                    c.sources.iter().map(|w| w.raw()).collect::<Vec<_>>(),
                    c.contents
                        .iter()
                        .map(|c| (&c.path, &c.data))
                        .collect::<Vec<_>>(),
                    c.dest
                ),
                StepKind::Arg(a) => format!(
                    " {:?}",
                    a.args
                        .iter()
                        .map(|b| match &b.value {
                            ArgValue::Default(w) => format!("{}=default({})", b.name, w.raw()),
                            v => format!("{}={v:?}", b.name),
                        })
                        .collect::<Vec<_>>()
                ),
                StepKind::Run(r) => format!(" {:?}", r.command),
                StepKind::Cmd(c) => format!(" {:?}", c.command),
                StepKind::Entrypoint(c) => format!(" {:?}", c.command),
                _ => String::new(),
            };
            writeln!(
                out,
                "  {}:{}-{} {}{extra}",
                step.location.line, step.location.column, step.location.end_line, step.original
            )
            .unwrap();
        }
    }
    writeln!(out, "target: {}", plan.target).unwrap();
    out
}

#[test]
fn ok_fixtures_parse_and_plan() {
    for path in fixtures("ok") {
        let source = String::from_utf8(fs_err::read(&path).unwrap()).unwrap();
        let ast = parse_ast(&source).unwrap();
        let df = parse(&source).unwrap_or_else(|d| panic!("{}", d.render("Dockerfile", &source)));
        let plan = plan(&df, &PlanOptions::default())
            .unwrap_or_else(|d| panic!("{}", d.render("Dockerfile", &source)));
        let dump: String = ast.nodes.iter().map(|n| n.dump() + "\n").collect();
        insta::assert_snapshot!(
            format!("ok-{}", name(&path)),
            format!("{dump}\n{}", summary(&plan))
        );
    }
}

#[test]
fn err_fixtures_fail_with_diagnostics() {
    for path in fixtures("err") {
        let source = String::from_utf8(fs_err::read(&path).unwrap()).unwrap();
        let diags = match parse(&source) {
            Err(d) => d,
            Ok(df) => plan(&df, &PlanOptions::default()).expect_err("must fail"),
        };
        insta::assert_snapshot!(
            format!("err-{}", name(&path)),
            diags.render("Dockerfile", &source)
        );
    }
}
