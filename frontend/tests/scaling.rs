//! Guards against super-linear blow-up: the frontend's cost must grow about linearly
//! with its input, whatever shape the input has.
//!
//! Each case builds a pathological input from a repeat count `n` (deep `${` nesting,
//! thousands of continuation lines, a huge heredoc, ...). The test compares the time of
//! one run over the input built with `100 × n` against 100 runs over the input built
//! with `n`: both process about the same number of bytes, so linear code gives a ratio
//! near 1 and quadratic code a ratio near 100. The bound, [`MAX_RATIO`], is generous so
//! that a noisy shared machine cannot fail it; it is a ratio, never a wall-clock
//! threshold, and each side is the best of several trials.
//!
//! Inputs that are super-linear or crash today are kept as `#[ignore]`d regression
//! tests with the reason; run them with `cargo test -p kiln-frontend --test scaling --
//! --ignored`. They are reported to the owners of the code concerned.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Largest accepted `time(one run at 100·n) / time(100 runs at n)`.
const MAX_RATIO: f64 = 8.0;
/// How much larger the big input is than the small one.
const SCALE: usize = 100;
/// Each side of the ratio is the fastest of this many trials.
const TRIALS: usize = 5;

/// Builds a pathological input from a repeat count.
type Input = fn(usize) -> String;

/// What `kiln build` does with Dockerfile text before running anything: the syntax
/// dump, the typed parse and the plan (which expands global `ARG`s and `FROM`).
fn frontend_work(text: &str) {
    let _ = black_box(frontend::dump(text));
    if let Ok(dockerfile) = frontend::parse(text) {
        let _ = black_box(frontend::plan(
            &dockerfile,
            &frontend::PlanOptions::default(),
        ));
    }
}

/// Best-of-[`TRIALS`] time of `runs` runs of [`frontend_work`] over `text`.
fn best_time(text: &str, runs: usize) -> Duration {
    (0..TRIALS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..runs {
                frontend_work(text);
            }
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// `time(input(SCALE·n)) / time(SCALE × input(n))`, after checking both inputs are
/// accepted where `must_parse` says they should be.
fn growth_ratio(name: &str, n: usize, input: Input) -> f64 {
    let small = input(n);
    let big = input(n * SCALE);
    assert!(
        big.len() >= small.len() * SCALE / 2,
        "{name}: the big input is not ~{SCALE}× the small one"
    );
    frontend_work(&big); // warm up allocator and caches
    let one_big = best_time(&big, 1).as_secs_f64();
    let many_small = best_time(&small, SCALE).as_secs_f64();
    one_big / many_small.max(1e-9)
}

fn assert_linear(name: &str, n: usize, input: Input) {
    let ratio = growth_ratio(name, n, input);
    assert!(
        ratio <= MAX_RATIO,
        "{name}: one input {SCALE}× larger costs {ratio:.1}× more than {SCALE} small ones \
         (linear ≈ 1, bound {MAX_RATIO}): super-linear behaviour"
    );
}

fn assert_accepted(input: &str) {
    let dockerfile = frontend::parse(input).unwrap_or_else(|d| panic!("{}", d.render("t", input)));
    frontend::plan(&dockerfile, &frontend::PlanOptions::default())
        .unwrap_or_else(|d| panic!("{}", d.render("t", input)));
}

// --- inputs -----------------------------------------------------------------------------

/// A global `ARG` whose default nests `${A:-` `n` deep (expanded by the plan).
fn nested_expansion(n: usize) -> String {
    format!(
        "ARG V={}x{}\nFROM img:$V\n",
        "${A:-".repeat(n),
        "}".repeat(n)
    )
}

/// One `RUN` joined from `n` continuation lines, some of them comments or blank.
fn continuations(n: usize) -> String {
    let mut out = String::from("FROM a\nRUN set -e");
    for i in 0..n {
        match i % 8 {
            0 => out.push_str(" \\\n# a comment inside the instruction"),
            1 => out.push_str(" \\\n"),
            _ => out.push_str(" \\\n    && echo step"),
        }
    }
    out.push('\n');
    out
}

/// One `RUN` heredoc of `n` body lines.
fn long_heredoc(n: usize) -> String {
    format!(
        "FROM a\nRUN <<EOF\n{}EOF\n",
        "echo \"line with $VAR and \\\\ and <<NOT\"\n".repeat(n)
    )
}

/// One `RUN` with `n` heredocs, their bodies one after another.
fn many_heredocs(n: usize) -> String {
    let markers: Vec<String> = (0..n).map(|i| format!("<<E{i}")).collect();
    let bodies: String = (0..n).map(|i| format!("body {i}\nE{i}\n")).collect();
    format!("FROM a\nRUN cat {} >/dev/null\n{bodies}", markers.join(" "))
}

/// One `ENV` with `n` quoted `key=value` pairs.
fn long_env(n: usize) -> String {
    let pairs: Vec<String> = (0..n).map(|i| format!("K{i}=\"v {i}\\\"\"")).collect();
    format!("FROM a\nENV {}\n", pairs.join(" "))
}

/// One `COPY` with `n` quoted `--exclude` flags.
fn many_flags(n: usize) -> String {
    format!(
        "FROM a\nCOPY {}src /dst\n",
        "--exclude=\"a b/*\" ".repeat(n)
    )
}

/// One exec-form `CMD` with `n` escaped JSON strings.
fn long_json(n: usize) -> String {
    format!("FROM a\nCMD [{}\"end\"]\n", "\"a\\u0041\\\"b\", ".repeat(n))
}

/// `n` single-line instructions in one stage.
fn many_instructions(n: usize) -> String {
    format!("FROM a\n{}", "RUN echo hi\n".repeat(n))
}

/// `n` stages, each copying from the one before (the first from an image).
fn many_stages(n: usize) -> String {
    (0..n)
        .map(|i| match i {
            0 => "FROM a AS s0\nCOPY --from=img /x /y\n".to_owned(),
            _ => format!("FROM a AS s{i}\nCOPY --from=s{} /x /y\n", i - 1),
        })
        .collect()
}

/// `ONBUILD` nested `n` deep.
fn nested_onbuild(n: usize) -> String {
    format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(n))
}

// --- tests --------------------------------------------------------------------------------

#[test]
fn pathological_inputs_scale_linearly() {
    let cases: &[(&str, usize, Input)] = &[
        ("nested ${A:-", 5, nested_expansion),
        ("continuation lines", 20, continuations),
        ("long heredoc", 20, long_heredoc),
        ("many heredocs", 10, many_heredocs),
        ("long ENV", 20, long_env),
        ("many flags", 20, many_flags),
        ("long JSON form", 20, long_json),
    ];
    let mut failures = Vec::new();
    for &(name, n, input) in cases {
        assert_accepted(&input(n * SCALE));
        let ratio = growth_ratio(name, n, input);
        if ratio > MAX_RATIO {
            failures.push(format!("{name}: ratio {ratio:.1} > {MAX_RATIO}"));
        }
    }
    assert!(
        failures.is_empty(),
        "super-linear cost (linear ≈ 1):\n{}",
        failures.join("\n")
    );
}

#[test]
fn many_instructions_scale_linearly() {
    assert_accepted(&many_instructions(50 * SCALE));
    assert_linear("many instructions", 50, many_instructions);
}

#[test]
fn many_stages_scale_linearly() {
    assert_accepted(&many_stages(10 * SCALE));
    assert_linear("many stages", 10, many_stages);
}

#[test]
fn deeply_nested_onbuild_is_rejected_without_overflow() {
    // 100,000 levels is an 800 KB file: not absurd for a generated Dockerfile.
    let text = nested_onbuild(100_000);
    assert!(
        frontend::parse(&text).is_err(),
        "ONBUILD ONBUILD is refused"
    );
    let dump = frontend::dump(&text).expect("BuildKit's parser accepts any nesting");
    let expected = format!(
        "(from \"a\")\n{}(run \"x\"){}\n",
        "(onbuild ".repeat(100_000),
        ")".repeat(100_000)
    );
    assert!(dump == expected, "the dump nests every level");
}

#[test]
fn deeply_nested_expansion_does_not_overflow() {
    let text = nested_expansion(100_000);
    let dockerfile = frontend::parse(&text).expect("parses");
    let plan = frontend::plan(&dockerfile, &frontend::PlanOptions::default())
        .unwrap_or_else(|d| panic!("{}", d.render("t", &text)));
    assert_eq!(plan.global_args[0].value.as_deref(), Some("x"));
}
