//! Criterion benchmarks of the Dockerfile frontend: parse + plan of a large generated
//! Dockerfile, its layers on their own, and word expansion.
//!
//! Run with `cargo bench --bench frontend` (figures and machine in `BENCHMARKS.md`).
//!
//! The Dockerfile is generated here, deterministically, so every run measures the same
//! input: [`LINES`] lines of many stages, each with global and stage `ARG`s, multi-line
//! `ENV`, `COPY` with flags and `--from` the previous stage, `RUN` with `--mount` and
//! continuation lines, `RUN` and `COPY` heredocs, `LABEL`, `EXPOSE`, `USER`,
//! `HEALTHCHECK` and `CMD`. Every stage copies from the one before, so planning the last
//! stage keeps them all (nothing is pruned away).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Size of the generated Dockerfile, in lines.
const LINES: usize = 5_000;

/// One stage of the generated file: 38 lines.
fn push_stage(out: &mut String, i: usize) {
    // Stage 0 builds on an image and copies from one; every later stage builds on and
    // copies from the stage before it.
    let (from, copy_from) = if i == 0 {
        (
            "${BASE_IMAGE}".to_owned(),
            "docker.io/library/golang:1.22".to_owned(),
        )
    } else {
        (format!("stage{}", i - 1), format!("stage{}", i - 1))
    };
    let _ = write!(
        out,
        r#"
# Stage {i}: build step {i} of the pipeline.
FROM --platform=$BUILDPLATFORM {from} AS stage{i}
ARG VERSION
ARG STAGE_{i}_FLAGS="-O2 -g"
ENV APP_HOME=/opt/app{i} \
    PATH=/opt/app{i}/bin:$PATH \
    LANG=C.UTF-8
WORKDIR ${{APP_HOME}}/src
COPY --chown=1000:1000 --chmod=0644 go.mod go.sum ./
COPY --from={copy_from} --link /opt/app{prev}/bin/ ./deps/
RUN --mount=type=cache,target=/root/.cache/go-build,id=cache{i} \
    --mount=type=bind,source=.,target=/src/ro \
    set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl git; \
    echo "building ${{VERSION:-dev}} with $STAGE_{i}_FLAGS"; \
    rm -rf /var/lib/apt/lists/*
RUN <<EOF
set -e
for f in a b c; do
    echo "stage {i}: $f"
done
EOF
COPY <<-"CONF" /etc/app{i}.conf
	name=stage{i}
	version=${{VERSION}}
	CONF
LABEL org.opencontainers.image.version="${{VERSION}}" \
      org.opencontainers.image.title="stage {i}"
EXPOSE {port}/tcp
USER 1000:1000
HEALTHCHECK --interval=30s --timeout=3s CMD ["/opt/app{i}/bin/health"]
VOLUME ["/var/lib/app{i}"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/app{i}/bin/app"]
CMD ["--stage", "{i}"]
"#,
        prev = i.saturating_sub(1),
        port = 8000 + i % 1000,
    );
}

/// A Dockerfile of exactly [`LINES`] lines (see the module docs).
fn generate_dockerfile() -> String {
    let mut out = String::from(
        "# syntax=docker/dockerfile:1\n\
         ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim\n\
         ARG VERSION=1.2.3\n",
    );
    let mut stage = 0;
    loop {
        let mut next = String::new();
        push_stage(&mut next, stage);
        if out.lines().count() + next.lines().count() > LINES {
            break;
        }
        out.push_str(&next);
        stage += 1;
    }
    // Fill up to exactly LINES with single-line steps in the last stage.
    let mut pad = 0;
    while out.lines().count() < LINES {
        let _ = writeln!(out, "RUN echo padding {pad}");
        pad += 1;
    }
    out
}

fn bench_parse_plan(c: &mut Criterion) {
    let text = generate_dockerfile();
    assert_eq!(text.lines().count(), LINES);
    // Fail early, with the diagnostics, if the generator and the frontend disagree.
    let dockerfile =
        frontend::parse(&text).unwrap_or_else(|d| panic!("{}", d.render("gen", &text)));
    let plan = frontend::plan(&dockerfile, &frontend::PlanOptions::default())
        .unwrap_or_else(|d| panic!("{}", d.render("gen", &text)));
    assert!(plan.stages.len() > 100, "every stage is kept");

    let mut group = c.benchmark_group(format!("frontend/{LINES}-line Dockerfile"));
    group.throughput(Throughput::Elements(LINES as u64));
    group.sample_size(20);
    group.bench_function("parse+plan", |b| {
        b.iter(|| {
            let dockerfile = frontend::parse(black_box(&text)).expect("parses");
            frontend::plan(&dockerfile, &frontend::PlanOptions::default()).expect("plans")
        });
    });
    group.bench_function("parse (syntax + typed)", |b| {
        b.iter(|| frontend::parse(black_box(&text)).expect("parses"));
    });
    group.bench_function("dump (syntax only)", |b| {
        b.iter(|| frontend::dump(black_box(&text)).expect("parses"));
    });
    group.bench_function("plan (of a parsed file)", |b| {
        b.iter(|| frontend::plan(black_box(&dockerfile), &frontend::PlanOptions::default()));
    });
    group.finish();
}

/// Words as they appear in Dockerfiles, from plain to every operator kiln supports.
const WORDS: &[&str] = &[
    "/usr/local/bin",
    "$HOME",
    "${HOME}/.cache",
    "/opt/app/bin:$PATH",
    "${VERSION:-dev}",
    "${UNSET-fallback}",
    "${VERSION:+v$VERSION}",
    "\"quoted ${VERSION} with spaces\"",
    "'single $NOT_EXPANDED'",
    "escaped\\ space\\$VERSION",
    "${VERSION%%.*}",
    "${VERSION#*.}",
    "${IMAGE##*/}",
    "${IMAGE%:*}",
    "${TARGETOS}/${TARGETARCH}${TARGETVARIANT:+/$TARGETVARIANT}",
    "--config=${HOME}/.config/app.toml",
];

fn bench_expand(c: &mut Criterion) {
    let env: BTreeMap<String, String> = [
        ("HOME", "/root"),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("VERSION", "1.22.3"),
        ("IMAGE", "docker.io/library/golang:1.22"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "arm"),
        ("TARGETVARIANT", "v7"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let lookup = |name: &str| env.get(name).cloned();
    for word in WORDS {
        frontend::expand(word, '\\', &lookup).unwrap_or_else(|e| panic!("{word}: {e}"));
    }

    let mut group = c.benchmark_group("expand");
    group.throughput(Throughput::Elements(WORDS.len() as u64));
    group.bench_function("expand (16 words)", |b| {
        b.iter(|| {
            for word in WORDS {
                black_box(frontend::expand(black_box(word), '\\', &lookup).expect("expands"));
            }
        });
    });
    group.bench_function("expand_words (16 words)", |b| {
        b.iter(|| {
            for word in WORDS {
                black_box(frontend::expand_words(black_box(word), '\\', &lookup).expect("expands"));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench_parse_plan, bench_expand);
criterion_main!(benches);
