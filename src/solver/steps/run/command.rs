//! What a RUN step executes: its argv (shell form through the stage's `SHELL`, exec form, and
//! heredocs as BuildKit's `dispatchRun` runs them), its environment, and its history text.

use std::collections::BTreeMap;

use frontend::CommandLine;
use frontend::instructions::RunCommand;

use crate::solver::stage::{DEFAULT_PATH, StageState};
use crate::solver::steps::metadata::shell_of;

/// Where BuildKit mounts the script of a single heredoc that starts with `#!`.
pub const HEREDOC_SCRIPT_DIR: &str = "/dev/pipes";

/// The process a RUN step starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub argv: Vec<String>,
    /// A single `#!` heredoc is written to a file mounted read-only under
    /// [`HEREDOC_SCRIPT_DIR`] and executed: (file name, content).
    pub script: Option<(String, String)>,
}

/// Whether the command text is just a heredoc marker (`<<EOF`, `<<-"EOF"`, `0<<EOF`).
fn is_lone_marker(text: &str) -> bool {
    let t = text.trim();
    let t = t.trim_start_matches(|c: char| c.is_ascii_digit());
    t.starts_with("<<") && !t.contains(char::is_whitespace) && t.len() > 2
}

/// The argv of a RUN, as BuildKit builds it.
pub fn invocation(state: &StageState, run: &RunCommand) -> Invocation {
    match &run.command {
        CommandLine::Exec(argv) => Invocation {
            argv: argv.clone(),
            script: None,
        },
        CommandLine::Shell(text) => {
            let mut script = None;
            let body = match run.heredocs.as_slice() {
                [] => text.clone(),
                [doc] if is_lone_marker(text) => {
                    let data = doc.chomped_content();
                    if data.starts_with("#!") {
                        let path = format!("{HEREDOC_SCRIPT_DIR}/{}", doc.name);
                        script = Some((doc.name.clone(), data));
                        // The script is executed directly, not through the shell.
                        return Invocation {
                            argv: vec![path],
                            script,
                        };
                    }
                    data
                }
                docs => {
                    // The shell reads the heredocs itself: give it the text back.
                    let mut full = text.clone();
                    for doc in docs {
                        full.push('\n');
                        full.push_str(&doc.content);
                        full.push_str(&doc.name);
                    }
                    full
                }
            };
            let mut argv = shell_of(state);
            argv.push(body);
            Invocation { argv, script }
        }
    }
}

/// The stage's ARGs that RUN sees, in declaration order: those with a value, unless ENV has the
/// same name (ENV wins, as in BuildKit).
pub fn visible_args(state: &StageState) -> Vec<(String, String)> {
    state
        .arg_order
        .iter()
        .filter(|name| state.config.config.env_var(name).is_none())
        .filter_map(|name| state.args.get(name).map(|v| (name.clone(), v.clone())))
        .collect()
}

/// The process environment: the image's ENV, then the stage's ARGs, the proxy build args
/// (passed even when not declared, and kept out of history), `PATH` and `HOME` defaults.
pub fn environment(
    state: &StageState,
    build_args: &BTreeMap<String, String>,
    home: &str,
) -> Vec<String> {
    let mut env: Vec<String> = state.config.config.env.clone().unwrap_or_default();
    let has = |env: &[String], name: &str| {
        env.iter()
            .any(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == name)
    };
    for (k, v) in visible_args(state) {
        env.push(format!("{k}={v}"));
    }
    for name in frontend::args::PROXY_ARGS {
        if let Some(v) = build_args.get(name)
            && !has(&env, name)
        {
            env.push(format!("{name}={v}"));
        }
    }
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

/// The history `created_by` of a RUN (BuildKit's `runCommandString` + `# buildkit`): the
/// stage's ARGs as `|N K=V ...`, then the argv joined by spaces.
pub fn created_by(state: &StageState, argv: &[String]) -> String {
    let args = visible_args_for_history(state);
    let mut parts: Vec<String> = Vec::new();
    if !args.is_empty() {
        parts.push(format!("|{}", args.len()));
        parts.extend(args.into_iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(argv.iter().cloned());
    format!("RUN {} # buildkit", parts.join(" "))
}

/// Every declared ARG with a value; an ENV of the same name gives the value (BuildKit takes
/// the value from the environment map when present).
fn visible_args_for_history(state: &StageState) -> Vec<(String, String)> {
    state
        .arg_order
        .iter()
        .filter_map(|name| {
            let v = state
                .config
                .config
                .env_var(name)
                .map(str::to_owned)
                .or_else(|| state.args.get(name).cloned())?;
            Some((name.clone(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageConfig;

    fn state() -> StageState {
        StageState::new(ImageConfig::default(), Vec::new(), "t".into())
    }

    fn run_of(text: &str) -> RunCommand {
        let df = frontend::parse(text).unwrap();
        let plan = frontend::plan(&df, &frontend::PlanOptions::default()).unwrap();
        let step = plan.stages[0].steps.last().unwrap().clone();
        match step.kind {
            frontend::StepKind::Run(r) => r,
            other => panic!("not a RUN: {other:?}"),
        }
    }

    #[test]
    fn shell_exec_and_heredoc_forms() {
        let s = state();
        let r = run_of("FROM scratch\nRUN echo hi\n");
        assert_eq!(invocation(&s, &r).argv, ["/bin/sh", "-c", "echo hi"]);
        let r = run_of("FROM scratch\nRUN [\"echo\", \"hi\"]\n");
        assert_eq!(invocation(&s, &r).argv, ["echo", "hi"]);
        let r = run_of("FROM scratch\nRUN <<EOF\necho a\necho b\nEOF\n");
        assert_eq!(
            invocation(&s, &r).argv,
            ["/bin/sh", "-c", "echo a\necho b\n"]
        );
        let r = run_of("FROM scratch\nRUN <<EOF\n#!/bin/busybox sh\necho a\nEOF\n");
        let inv = invocation(&s, &r);
        assert_eq!(inv.argv, ["/dev/pipes/EOF"]);
        assert_eq!(
            inv.script,
            Some(("EOF".into(), "#!/bin/busybox sh\necho a\n".into()))
        );
        let r = run_of("FROM scratch\nRUN cat <<EOF > /x\nhello\nEOF\n");
        assert_eq!(
            invocation(&s, &r).argv,
            ["/bin/sh", "-c", "cat <<EOF > /x\nhello\nEOF"]
        );
        let r = run_of("FROM scratch\nRUN <<-EOF\n\techo a\nEOF\n");
        assert_eq!(invocation(&s, &r).argv, ["/bin/sh", "-c", "echo a\n"]);
    }

    #[test]
    fn environment_and_history() {
        let mut s = state();
        s.config.config.set_env("PATH", "/bin");
        s.config.config.set_env("A", "env");
        for (k, v) in [("A", "arg"), ("B", "b")] {
            crate::solver::steps::metadata::arg(&mut s, k, Some(v.into()));
        }
        let build_args: BTreeMap<String, String> = [
            ("HTTP_PROXY".to_owned(), "http://p".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ]
        .into();
        assert_eq!(
            environment(&s, &build_args, "/root"),
            [
                "PATH=/bin",
                "A=env",
                "B=b",
                "HTTP_PROXY=http://p",
                "HOME=/root"
            ]
        );
        assert_eq!(
            created_by(&s, &["/bin/sh".into(), "-c".into(), "make".into()]),
            "RUN |2 A=env B=b /bin/sh -c make # buildkit"
        );
        assert_eq!(
            created_by(&state(), &["echo".into()]),
            "RUN echo # buildkit"
        );
    }
}
