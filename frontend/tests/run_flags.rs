//! `RUN --mount`, `--network` and `--security` through [`frontend::parse`]: typed values
//! where the flag value has no `$`, and diagnostics pointing into the value.

use std::path::Path;

use frontend::instructions::mount::{CacheSharing, Mount, NetworkMode, SecurityMode};
use frontend::{Code, InstructionKind};

fn run(src: &str) -> frontend::instructions::RunCommand {
    let df = frontend::parse(src).unwrap_or_else(|d| panic!("{}", d.render("Dockerfile", src)));
    df.instructions
        .into_iter()
        .find_map(|i| match i.kind {
            InstructionKind::Run(run) => Some(run),
            _ => None,
        })
        .expect("a RUN")
}

/// The code, message and underlined text of every error.
fn errors(src: &str) -> Vec<(Code, String, &str)> {
    let diags = frontend::parse(src).expect_err(src);
    diags
        .iter()
        .map(|d| (d.code, d.message.clone(), d.span.text(src)))
        .collect()
}

#[test]
fn typed_flags() {
    let r = run("FROM a\n\
         RUN --mount=type=cache,target=/c,sharing=locked --mount=target=. \\\n\
             --mount=type=secret,id=$ID --network=none --security=insecure make\n");
    assert_eq!(r.flags.len(), 5);
    assert_eq!(r.mounts.len(), 3);
    assert!(matches!(
        &r.mounts[0].parsed,
        Some(Mount::Cache { id, sharing: CacheSharing::Locked, .. }) if id == "/c"
    ));
    assert_eq!(r.mounts[0].raw.raw(), "type=cache,target=/c,sharing=locked");
    assert!(matches!(&r.mounts[1].parsed, Some(Mount::Bind { target: Some(t), .. }) if t == "."));
    // A `$` leaves it to the engine.
    assert_eq!(r.mounts[2].parsed, None);
    let lookup = |n: &str| (n == "ID").then(|| "npm".to_owned());
    assert!(matches!(
        Mount::parse_word(&r.mounts[2].raw, &lookup),
        Ok(Mount::Secret { id, .. }) if id == "npm"
    ));
    assert_eq!(r.network.unwrap().parsed, Some(NetworkMode::None));
    assert_eq!(r.security.unwrap().parsed, Some(SecurityMode::Insecure));

    let r = run(
        "FROM a\nRUN --network=$NET --security=\"sandbox\" --mount=\"type=tmpfs,target=/t\" x\n",
    );
    assert_eq!(r.network.unwrap().parsed, None);
    assert_eq!(r.security.unwrap().parsed, Some(SecurityMode::Sandbox));
    assert!(matches!(r.mounts[0].parsed, Some(Mount::Tmpfs { .. })));
    let r = run("FROM a\nRUN x\n");
    assert!(r.mounts.is_empty() && r.network.is_none() && r.security.is_none());
}

#[test]
fn diagnostics_point_into_the_value() {
    assert_eq!(
        errors("FROM a\nRUN --mount=type=cache,traget=/c make\n"),
        [(
            Code::InvalidMount,
            "invalid `--mount`: unexpected key 'traget' in 'traget=/c'".to_owned(),
            "traget=/c"
        )]
    );
    assert_eq!(
        errors("FROM a\nRUN --mount=type=tmpfs,target=/t,size=big x\n"),
        [(
            Code::InvalidMount,
            "invalid `--mount`: invalid value for size: big".to_owned(),
            "big"
        )]
    );
    // Quoted flag values: the whole value.
    assert_eq!(
        errors("FROM a\nRUN --mount=\"type=cahce,target=/c\" make\n"),
        [(
            Code::InvalidMount,
            "invalid `--mount`: unsupported mount type \"cahce\"".to_owned(),
            "\"type=cahce,target=/c\""
        )]
    );
    // Every bad flag is reported.
    let all = errors("FROM a\nRUN --mount=type=ssh,src=x --network=hots --security=unsafe x\n");
    assert_eq!(
        all,
        [
            (
                Code::InvalidMount,
                "invalid `--mount`: ssh does not support source".to_owned(),
                "src=x"
            ),
            (
                Code::InvalidFlagValue,
                "network mode \"hots\" not supported".to_owned(),
                "hots"
            ),
            (
                Code::InvalidFlagValue,
                "security mode \"unsafe\" not supported".to_owned(),
                "unsafe"
            ),
        ]
    );
    let diags = frontend::parse("FROM a\nRUN --network=hots x\n").unwrap_err();
    assert_eq!(
        diags.iter().next().unwrap().help.as_deref(),
        Some("did you mean `host`?")
    );
}

/// Every real-world Dockerfile parses (the conformance test checks that too); here we
/// also check that each `$`-free `--mount` got its typed value.
#[test]
fn realworld_mounts_are_typed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/realworld");
    let mut typed = 0;
    for entry in fs_err::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let Ok(src) = fs_err::read_to_string(&path) else {
            continue;
        };
        let Ok(df) = frontend::parse(&src) else {
            continue;
        };
        for i in &df.instructions {
            if let InstructionKind::Run(run) = &i.kind {
                for m in &run.mounts {
                    let has_var = m.raw.raw().contains('$');
                    assert_eq!(
                        m.parsed.is_some(),
                        !has_var,
                        "{}: {}",
                        path.display(),
                        m.raw
                    );
                    typed += usize::from(!has_var);
                }
            }
        }
    }
    assert!(typed > 50, "only {typed} typed mounts");
}
