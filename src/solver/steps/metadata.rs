//! Instructions that only change the image config: ENV, LABEL, EXPOSE, USER, CMD, ENTRYPOINT,
//! VOLUME, STOPSIGNAL, SHELL, MAINTAINER, ARG, HEALTHCHECK, ONBUILD. Each records a history
//! entry with `empty_layer: true`, worded as BuildKit words it (ONBUILD records none, as
//! BuildKit's `dispatchOnbuild`).

use std::collections::BTreeMap;

use super::StepError;
use crate::image::config::EmptyObject;
use crate::solver::stage::StageState;

/// How a CMD/ENTRYPOINT/RUN command was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

/// Go's `%q` of a string slice, as BuildKit writes commands into history: `["sh" "-c" "x"]`.
pub fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).expect("strings serialize"))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// The stage's `SHELL`, `/bin/sh -c` by default.
pub fn shell_of(state: &StageState) -> Vec<String> {
    state
        .config
        .config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".to_owned(), "-c".to_owned()])
}

fn command_argv(state: &StageState, command: &Command) -> Vec<String> {
    match command {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut argv = shell_of(state);
            argv.push(s.clone());
            argv
        }
    }
}

pub fn env(state: &mut StageState, pairs: &[(String, String)]) {
    for (k, v) in pairs {
        state.config.config.set_env(k, v);
    }
    let text = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    state.push_history(format!("ENV {text}"), true);
}

pub fn label(state: &mut StageState, pairs: &[(String, String)]) {
    let labels = state.config.config.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in pairs {
        labels.insert(k.clone(), v.clone());
    }
    let text = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    state.push_history(format!("LABEL {text}"), true);
}

/// EXPOSE `80`, `80/tcp`, `53/udp`, `8000-8002` (each port of a range).
pub fn expose(state: &mut StageState, specs: &[String]) -> Result<(), StepError> {
    let mut added = Vec::new();
    for spec in specs {
        let (ports, proto) = match spec.split_once('/') {
            Some((p, proto)) => (p, proto.to_ascii_lowercase()),
            None => (spec.as_str(), "tcp".to_owned()),
        };
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(StepError::Invalid(format!(
                "invalid protocol `{proto}` in EXPOSE `{spec}` (use tcp, udp or sctp)"
            )));
        }
        let bad_port = || {
            StepError::Invalid(format!(
                "invalid port `{spec}` in EXPOSE: ports are 1-65535, or a range like 8000-8010"
            ))
        };
        let (lo, hi) = match ports.split_once('-') {
            Some((a, b)) => (
                a.parse::<u16>().map_err(|_| bad_port())?,
                b.parse::<u16>().map_err(|_| bad_port())?,
            ),
            None => {
                let p = ports.parse::<u16>().map_err(|_| bad_port())?;
                (p, p)
            }
        };
        if lo == 0 || hi < lo {
            return Err(bad_port());
        }
        for p in lo..=hi {
            added.push(format!("{p}/{proto}"));
        }
    }
    let exposed = state
        .config
        .config
        .exposed_ports
        .get_or_insert_with(BTreeMap::new);
    for p in &added {
        exposed.insert(p.clone(), EmptyObject {});
    }
    state.push_history(format!("EXPOSE {}", added.join(" ")), true);
    Ok(())
}

pub fn user(state: &mut StageState, user: &str) {
    state.config.config.user = Some(user.to_owned());
    state.push_history(format!("USER {user}"), true);
}

pub fn cmd(state: &mut StageState, command: &Command) {
    let argv = command_argv(state, command);
    state.push_history(format!("CMD {}", go_quoted_list(&argv)), true);
    state.config.config.cmd = Some(argv);
    state.cmd_set = true;
}

pub fn entrypoint(state: &mut StageState, command: &Command) {
    let argv = command_argv(state, command);
    state.push_history(format!("ENTRYPOINT {}", go_quoted_list(&argv)), true);
    state.config.config.entrypoint = Some(argv);
    // Docker: an ENTRYPOINT resets a CMD inherited from the base image.
    if !state.cmd_set {
        state.config.config.cmd = None;
    }
}

pub fn volume(state: &mut StageState, paths: &[String]) -> Result<(), StepError> {
    let volumes = state
        .config
        .config
        .volumes
        .get_or_insert_with(BTreeMap::new);
    for p in paths {
        if p.trim().is_empty() {
            return Err(StepError::Invalid(
                "VOLUME specified can not be an empty string".to_owned(),
            ));
        }
        volumes.insert(p.clone(), EmptyObject {});
    }
    state.push_history(format!("VOLUME {}", go_quoted_list(paths)), true);
    Ok(())
}

pub fn stopsignal(state: &mut StageState, signal: &str) {
    state.config.config.stop_signal = Some(signal.to_owned());
    state.push_history(format!("STOPSIGNAL {signal}"), true);
}

pub fn shell(state: &mut StageState, argv: &[String]) {
    state.config.config.shell = Some(argv.to_vec());
    state.push_history(format!("SHELL {}", go_quoted_list(argv)), true);
}

pub fn maintainer(state: &mut StageState, name: &str) {
    state.config.author = Some(name.to_owned());
    state.push_history(format!("MAINTAINER {name}"), true);
}

/// HEALTHCHECK into `config.Healthcheck` as Docker stores it (`HealthConfig`: `Test`, durations
/// in nanoseconds, `Retries`; zero fields left out), with BuildKit's history text: Go's `%q`
/// of the config pointer, `HEALTHCHECK &{["CMD-SHELL" "curl -f x"] "30s" "3s" "0s" "0s" '\x03'}`
/// (BuildKit `dispatchHealthcheck`).
pub fn healthcheck(state: &mut StageState, h: &frontend::instructions::HealthcheckCommand) {
    use frontend::instructions::HealthcheckCommand;
    let zero = std::time::Duration::ZERO;
    let (test, durations, retries) = match h {
        HealthcheckCommand::None => (vec!["NONE".to_owned()], [zero; 4], 0),
        HealthcheckCommand::Cmd(t) => {
            let test = match &t.test {
                frontend::CommandLine::Exec(v) => {
                    let mut all = vec!["CMD".to_owned()];
                    all.extend(v.iter().cloned());
                    all
                }
                frontend::CommandLine::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
            };
            let d = |o: Option<std::time::Duration>| o.unwrap_or(zero);
            (
                test,
                [
                    d(t.interval),
                    d(t.timeout),
                    d(t.start_period),
                    d(t.start_interval),
                ],
                t.retries.unwrap_or(0),
            )
        }
    };
    let mut config = serde_json::Map::new();
    config.insert("Test".to_owned(), serde_json::json!(test));
    for (name, d) in ["Interval", "Timeout", "StartPeriod", "StartInterval"]
        .iter()
        .zip(durations)
    {
        if !d.is_zero() {
            let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            config.insert((*name).to_owned(), serde_json::json!(ns));
        }
    }
    if retries != 0 {
        config.insert("Retries".to_owned(), serde_json::json!(retries));
    }
    state.config.config.healthcheck = Some(serde_json::Value::Object(config));
    let quoted: Vec<String> = durations
        .iter()
        .map(|d| format!("\"{}\"", go_duration(*d)))
        .collect();
    state.push_history(
        format!(
            "HEALTHCHECK &{{{} {} {}}}",
            go_quoted_list(&test),
            quoted.join(" "),
            go_quote_rune(retries)
        ),
        true,
    );
}

/// ONBUILD: the trigger text is appended to `config.OnBuild`; it runs when an image built from
/// this one uses it as a base (see `base`).
pub fn onbuild(state: &mut StageState, expression: &str) {
    state
        .config
        .config
        .on_build
        .get_or_insert_with(Vec::new)
        .push(expression.to_owned());
}

/// Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `250ms`, `10µs`, `7ns`.
pub fn go_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    if ns < 1_000_000_000 {
        let (unit, div) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("\u{b5}s", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(ns, div));
    }
    let secs = ns / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    let s = decimal(
        (secs % 60) * 1_000_000_000 + ns % 1_000_000_000,
        1_000_000_000,
    );
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// `v / div` with the fraction's trailing zeros dropped (`1500, 1000` → `1.5`).
fn decimal(v: u128, div: u128) -> String {
    let (int, frac) = (v / div, v % div);
    if frac == 0 {
        return int.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// Go's `%q` of an integer (`strconv.QuoteRune`): `'\x03'`, `'\n'`, `'A'`.
fn go_quote_rune(n: u32) -> String {
    let inner = match char::from_u32(n).unwrap_or('\u{fffd}') {
        '\u{7}' => "\\a".to_owned(),
        '\u{8}' => "\\b".to_owned(),
        '\u{c}' => "\\f".to_owned(),
        '\n' => "\\n".to_owned(),
        '\r' => "\\r".to_owned(),
        '\t' => "\\t".to_owned(),
        '\u{b}' => "\\v".to_owned(),
        '\'' => "\\'".to_owned(),
        '\\' => "\\\\".to_owned(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("\\x{:02x}", c as u32),
        c if c.is_control() => format!("\\u{:04x}", c as u32),
        c => c.to_string(),
    };
    format!("'{inner}'")
}

/// ARG inside a stage: visible to later expansion; never recorded in the config's env.
pub fn arg(state: &mut StageState, name: &str, value: Option<String>) {
    if !state.arg_order.iter().any(|n| n == name) {
        state.arg_order.push(name.to_owned());
    }
    if let Some(v) = value {
        state.args.insert(name.to_owned(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageConfig;

    fn state() -> StageState {
        StageState::new(
            ImageConfig::default(),
            Vec::new(),
            "2026-01-01T00:00:00Z".into(),
        )
    }

    #[test]
    fn shell_form_uses_the_stage_shell_and_entrypoint_resets_inherited_cmd() {
        let mut s = state();
        s.config.config.cmd = Some(vec!["inherited".into()]);
        entrypoint(&mut s, &Command::Exec(vec!["/app".into()]));
        assert_eq!(s.config.config.cmd, None);
        shell(&mut s, &["/bin/bash".into(), "-eu".into(), "-c".into()]);
        cmd(&mut s, &Command::Shell("echo hi".into()));
        assert_eq!(
            s.config.config.cmd.as_deref().unwrap(),
            ["/bin/bash", "-eu", "-c", "echo hi"]
        );
        entrypoint(&mut s, &Command::Shell("run".into()));
        assert!(
            s.config.config.cmd.is_some(),
            "a CMD set in this stage survives ENTRYPOINT"
        );
        assert_eq!(
            s.config.history.last().unwrap().created_by.as_deref(),
            Some(r#"ENTRYPOINT ["/bin/bash" "-eu" "-c" "run"]"#)
        );
        assert!(s.config.history.iter().all(|h| h.empty_layer));
    }

    #[test]
    fn expose_normalizes_ports_and_ranges() {
        let mut s = state();
        expose(&mut s, &["80".into(), "53/UDP".into(), "8000-8002".into()]).unwrap();
        let ports: Vec<&String> = s
            .config
            .config
            .exposed_ports
            .as_ref()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            ports,
            ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]
        );
        for bad in ["0", "70000", "80/xyz", "9-8", "abc"] {
            assert!(expose(&mut s, &[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn healthcheck_config_and_history_as_buildkit_writes_them() {
        use frontend::instructions::{HealthcheckCommand, HealthcheckTest};
        use std::time::Duration;
        let mut s = state();
        let h = HealthcheckCommand::Cmd(HealthcheckTest {
            test: frontend::CommandLine::Shell("curl -f http://localhost/".into()),
            interval: Some(Duration::from_secs(300)),
            timeout: Some(Duration::from_secs(3)),
            start_period: None,
            start_interval: Some(Duration::from_millis(1500)),
            retries: Some(3),
        });
        healthcheck(&mut s, &h);
        assert_eq!(
            serde_json::to_string(s.config.config.healthcheck.as_ref().unwrap()).unwrap(),
            r#"{"Test":["CMD-SHELL","curl -f http://localhost/"],"Interval":300000000000,"Timeout":3000000000,"StartInterval":1500000000,"Retries":3}"#
        );
        assert_eq!(
            s.config.history.last().unwrap().created_by.as_deref(),
            Some(
                r#"HEALTHCHECK &{["CMD-SHELL" "curl -f http://localhost/"] "5m0s" "3s" "0s" "1.5s" '\x03'}"#
            )
        );
        healthcheck(&mut s, &HealthcheckCommand::None);
        assert_eq!(
            s.config.config.healthcheck,
            Some(serde_json::json!({"Test": ["NONE"]}))
        );
        assert_eq!(
            s.config.history.last().unwrap().created_by.as_deref(),
            Some(r#"HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" '\x00'}"#)
        );
        assert!(s.config.history.iter().all(|h| h.empty_layer));
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_micros(10)), "10\u{b5}s");
        assert_eq!(go_duration(Duration::from_nanos(1_250_000)), "1.25ms");
        assert_eq!(go_quote_rune(10), "'\\n'");
        assert_eq!(go_quote_rune(65), "'A'");
        let before = s.config.history.len();
        onbuild(&mut s, "RUN echo hi");
        onbuild(&mut s, "COPY a /b");
        assert_eq!(
            s.config.config.on_build.as_deref().unwrap(),
            ["RUN echo hi", "COPY a /b"]
        );
        assert_eq!(s.config.history.len(), before, "ONBUILD records no history");
    }

    #[test]
    fn env_and_lookup() {
        let mut s = state();
        arg(&mut s, "V", Some("from-arg".into()));
        assert_eq!(s.lookup("V").as_deref(), Some("from-arg"));
        env(
            &mut s,
            &[("V".into(), "from-env".into()), ("W".into(), "a b".into())],
        );
        assert_eq!(
            s.lookup("V").as_deref(),
            Some("from-env"),
            "ENV wins over ARG"
        );
        assert_eq!(
            s.config.history.last().unwrap().created_by.as_deref(),
            Some("ENV V=from-env W=a b")
        );
    }
}
