//! `RUN` in builds, end to end: real containers in kiln's sandbox (and runc/crun for the
//! cross-check), on snapshots of both storage drivers, with every `--mount` type.
//!
//! Base image: `busybox:local`, built into each test's store `FROM scratch` from a rootfs made
//! of Debian's busybox-static (see `harness::rootfs`).

use std::path::Path;

use crate::harness::{self, Skip, skip_unless};
use crate::support::{
    Run, busybox_store, config_of, kiln_env, layer_entries, manifest_layers, write_files,
};

/// A store with `busybox:local` in it, and a context directory for the test's Dockerfile.
struct Fixture {
    root: tempfile::TempDir,
    ctx: tempfile::TempDir,
    driver: &'static str,
}

impl Fixture {
    fn new() -> Result<Self, Skip> {
        Self::with_driver("overlay")
    }

    fn with_driver(driver: &'static str) -> Result<Self, Skip> {
        Ok(Self {
            root: busybox_store(&[("KILN_STORAGE_DRIVER", driver)])?,
            ctx: harness::tempdir(),
            driver,
        })
    }

    fn kiln(&self, args: &[&str]) -> Run {
        kiln_env(
            self.root.path(),
            args,
            &[("KILN_STORAGE_DRIVER", self.driver)],
        )
    }

    /// Build `dockerfile` (with `files` in the context) as `test:1`.
    fn build(&self, dockerfile: &str, files: &[(&str, &str)], extra: &[&str]) -> Run {
        self.build_in(self.ctx.path(), "test:1", dockerfile, files, extra)
    }

    fn build_in(
        &self,
        ctx: &Path,
        tag: &str,
        dockerfile: &str,
        files: &[(&str, &str)],
        extra: &[&str],
    ) -> Run {
        let mut all = vec![("Dockerfile", dockerfile)];
        all.extend_from_slice(files);
        write_files(ctx, &all);
        let mut args = vec!["build", "--progress=plain", "-t", tag];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        self.kiln(&args)
    }

    /// Paths in the image's last layer.
    fn last_layer_paths(&self, image: &str) -> Vec<String> {
        let layers = manifest_layers(self.root.path(), image);
        layer_entries(self.root.path(), layers.last().unwrap())
            .into_iter()
            .map(|e| e.0)
            .collect()
    }

    /// A file of `image`, read by a RUN of a throwaway build (its output in the progress).
    fn file_in(&self, image: &str, path: &str) -> String {
        let ctx = harness::tempdir();
        let out = self
            .build_in(
                ctx.path(),
                "probe:1",
                &format!("FROM {image}\nRUN cat {path}\n"),
                &[],
                // The probe's output is wanted even when the same probe ran before.
                &["--no-cache"],
            )
            .ok();
        step_output(&out.stderr)
    }
}

/// The lines a RUN printed, from plain progress (`#N 0.123 text`).
fn step_output(stderr: &str) -> String {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('#')?;
            let (_, rest) = rest.split_once(' ')?;
            let (time, text) = rest.split_once(' ').unwrap_or((rest, ""));
            time.parse::<f64>().ok()?;
            Some(text.to_owned())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn run_writes_a_layer_with_only_its_changes() {
    let f = skip_unless!(Fixture::new());
    let out = f
        .build(
            "FROM busybox:local\nRUN echo hello > /greeting && echo to-stdout && echo to-stderr >&2\n",
            &[],
            &[],
        )
        .ok();
    let printed = step_output(&out.stderr);
    assert!(
        printed.contains("to-stdout") && printed.contains("to-stderr"),
        "{}",
        out.stderr
    );
    let paths = f.last_layer_paths("test:1");
    assert_eq!(
        paths,
        ["greeting"],
        "only the step's change (no /etc/hosts, no stubs)"
    );
    let cfg = config_of(f.root.path(), "test:1");
    let last = cfg["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["created_by"],
        "RUN /bin/sh -c echo hello > /greeting && echo to-stdout && echo to-stderr >&2 # buildkit"
    );
    assert_eq!(f.file_in("test:1", "/greeting"), "hello");
}

#[test]
fn env_args_user_workdir_and_shell() {
    let f = skip_unless!(Fixture::new());
    let df = r#"FROM busybox:local
ARG A=from-arg
ENV B=from-env
ARG B=ignored
WORKDIR /work/dir
USER app
RUN echo "$A $B $(pwd) $(id -u):$(id -g) $(id -G) $HOME $(hostname)" > /tmp/out
SHELL ["/bin/sh", "-ec"]
RUN ["/bin/sh", "-c", "echo exec-form $0", "arg0"]
"#;
    let out = f.build(df, &[], &[]).ok();
    let printed = step_output(&out.stderr);
    assert!(printed.contains("exec-form arg0"), "{printed}");
    assert_eq!(
        f.file_in("test:1", "/tmp/out"),
        "from-arg from-env /work/dir 1000:1000 1000 2000 /home/app buildkitsandbox"
    );
    let cfg = config_of(f.root.path(), "test:1");
    let created: Vec<String> = cfg["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        created
            .iter()
            .any(|c| c.starts_with("RUN |2 A=from-arg B=from-env /bin/sh -c echo")),
        "{created:?}"
    );
}

#[test]
fn heredocs_run_as_buildkit_runs_them() {
    let f = skip_unless!(Fixture::new());
    let df = "FROM busybox:local\nRUN <<EOF\necho one > /a\necho two >> /a\nEOF\nRUN <<EOF\n#!/bin/sh\necho script > /b\nEOF\nRUN cat <<EOT > /c\nthree\nEOT\n";
    f.build(df, &[], &[]).ok();
    assert_eq!(f.file_in("test:1", "/a"), "one\ntwo");
    assert_eq!(f.file_in("test:1", "/b"), "script");
    assert_eq!(f.file_in("test:1", "/c"), "three");
}

#[test]
fn a_failing_run_reports_location_command_code_and_output_tail() {
    let f = skip_unless!(Fixture::new());
    let df = "FROM busybox:local\nRUN echo fine\nRUN for i in $(seq 1 30); do echo line$i; done; exit 7\n";
    let out = f.build(df, &[], &[]).fails_with(1);
    assert!(out.stderr.contains("Dockerfile:3"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("did not complete successfully: exit code: 7"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("line30") && out.stderr.contains("line11"),
        "{}",
        out.stderr
    );
    let tail_start = out.stderr.find("last 20 lines").expect("the tail is shown");
    assert!(
        !out.stderr[tail_start..].contains("line10\n"),
        "only 20 lines: {}",
        out.stderr
    );
    // Nothing is left behind: no mounts under the store, no test image.
    let mounts = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(f.root.path().to_str().unwrap()),
        "{mounts}"
    );
    f.kiln(&["image", "inspect", "test:1"]).fails_with(1);
}

#[test]
fn unknown_user_is_a_clear_error() {
    let f = skip_unless!(Fixture::new());
    let out = f
        .build("FROM busybox:local\nUSER nobody-here\nRUN true\n", &[], &[])
        .fails_with(1);
    assert!(
        out.stderr.contains("nobody-here") && out.stderr.contains("/etc/passwd"),
        "{}",
        out.stderr
    );
}

/// A RUN's container is in its own cgroup in every hierarchy it joins (the init is created in
/// the cgroup2 directory with `CLONE_INTO_CGROUP` and moves itself in each v1 hierarchy), and
/// the device rules hold there: `/dev/mem` cannot be made or opened, `/dev/null` can.
#[test]
fn run_steps_join_their_cgroup_and_device_rules_hold() {
    let f = skip_unless!(Fixture::new());
    skip_unless!(harness::require(
        kiln::sandbox::cgroup::layout() != kiln::sandbox::cgroup::Layout::None,
        "no cgroup filesystem mounted"
    ));
    let out = f
        .build(
            "FROM busybox:local\n\
             RUN cat /proc/self/cgroup; \\\n\
                 (mknod /tmp/mem c 1 1 && head -c1 /tmp/mem >/dev/null) 2>/dev/null && echo mem:opened || echo mem:refused; \\\n\
                 mknod /tmp/null c 1 3 && (echo x > /tmp/null && echo null:written)\n",
            &[],
            &["--no-cache"],
        )
        .ok();
    let printed = step_output(&out.stderr);
    let joined: Vec<&str> = printed
        .lines()
        .filter(|l| l.contains("/kiln/kiln-run-"))
        .collect();
    // The hierarchies kiln joins for a container with device rules: pids, memory, cpu and
    // devices on v1 (cgroup2 as well on a hybrid host), or the one cgroup2 hierarchy.
    let wanted: &[&str] = match kiln::sandbox::cgroup::layout() {
        kiln::sandbox::cgroup::Layout::Unified => &["0::"],
        kiln::sandbox::cgroup::Layout::Hybrid => &["pids", "memory", "devices", "cpu", "0::"],
        _ => &["pids", "memory", "devices", "cpu"],
    };
    for controller in wanted {
        assert!(
            joined.iter().any(|l| if *controller == "0::" {
                l.starts_with("0::")
            } else {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == *controller))
            }),
            "not in its cgroup for {controller}:\n{printed}"
        );
    }
    if kiln::sandbox::cgroup::layout() != kiln::sandbox::cgroup::Layout::Unified {
        // v1 devices rules (cgroup2 would need an eBPF program, which kiln does not load).
        assert!(printed.contains("mem:refused"), "{printed}");
    }
    assert!(printed.contains("null:written"), "{printed}");
}

#[test]
fn background_processes_do_not_hang_the_build() {
    let f = skip_unless!(Fixture::new());
    let started = std::time::Instant::now();
    f.build(
        "FROM busybox:local\nRUN sleep 1000 & echo started\n",
        &[],
        &[],
    )
    .ok();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn network_modes() {
    let f = skip_unless!(Fixture::new());
    let df = "FROM busybox:local\nRUN --network=none ls /sys/class/net > /none\nRUN ls /sys/class/net > /default\nRUN --network=host ls /sys/class/net > /host\n";
    f.build(df, &[], &[]).ok();
    assert_eq!(f.file_in("test:1", "/none"), "lo");
    assert_eq!(f.file_in("test:1", "/default"), "lo");
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let seen = f.file_in("test:1", "/host");
    for iface in host {
        assert!(seen.lines().any(|l| l == iface), "{iface} in {seen}");
    }
}

#[test]
fn bind_mounts_from_context_and_stage() {
    let f = skip_unless!(Fixture::new());
    let df = r#"FROM busybox:local AS tools
RUN echo from-stage > /tool

FROM busybox:local
RUN --mount=target=/src cat /src/input > /copied && ! touch /src/x 2>/dev/null
RUN --mount=target=/src,rw touch /src/new && ls /src > /listing
RUN --mount=from=tools,source=/tool,target=/t cat /t > /from-stage
"#;
    f.build(df, &[("input", "context-file\n")], &[]).ok();
    assert_eq!(f.file_in("test:1", "/copied"), "context-file");
    assert!(f.file_in("test:1", "/listing").contains("new"));
    assert!(
        !f.ctx.path().join("new").exists(),
        "rw bind writes are discarded"
    );
    assert_eq!(f.file_in("test:1", "/from-stage"), "from-stage");
    let paths = f.last_layer_paths("test:1");
    assert_eq!(paths, ["from-stage"], "mount targets are not in the layer");
}

#[test]
fn cache_mounts_persist_outside_layers_and_prune_clears_them() {
    let f = skip_unless!(Fixture::new());
    let df = "FROM busybox:local\nRUN --mount=type=cache,target=/var/cache/app,id=app echo run >> /var/cache/app/log && cat /var/cache/app/log | wc -l > /count\n";
    f.build(df, &[], &[]).ok();
    assert_eq!(f.file_in("test:1", "/count").trim(), "1");
    f.build(df, &[], &["--no-cache"]).ok();
    assert_eq!(
        f.file_in("test:1", "/count").trim(),
        "2",
        "the cache persisted"
    );
    let pruned = f.kiln(&["builder", "prune", "-f"]).ok();
    assert!(
        pruned.stdout.starts_with("Total reclaimed space: "),
        "{}",
        pruned.stdout
    );
    f.build(&df.replace("/count", "/count2"), &[], &[]).ok();
    assert_eq!(
        f.file_in("test:1", "/count2").trim(),
        "1",
        "pruned cache starts empty"
    );
    let paths = f.last_layer_paths("test:1");
    assert!(
        paths.iter().all(|p| !p.starts_with("var/cache/app/")),
        "{paths:?}"
    );
}

#[test]
fn tmpfs_secret_and_ssh_mounts() {
    let f = skip_unless!(Fixture::new());
    let secret = harness::tempdir();
    let secret_file = secret.path().join("token");
    fs_err::write(&secret_file, "hunter2").unwrap();
    let agent_dir = harness::tempdir();
    let agent_sock = agent_dir.path().join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&agent_sock).unwrap();
    let df = r#"FROM busybox:local
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && mount | grep ' /scratch ' | grep -q tmpfs
RUN --mount=type=secret,id=token md5sum /run/secrets/token | grep -q ^2ab96390c7dbe3439de74d0c9b0b1767 && echo secret-ok
RUN --mount=type=secret,id=token,env=TOKEN,target=/s printf %s "$TOKEN" | md5sum | grep -q ^2ab96390c7dbe3439de74d0c9b0b1767 && test "$(stat -c %a /s)" = 400
RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && stat -c '%a %u' "$SSH_AUTH_SOCK" > /sshinfo
"#;
    let secret_arg = format!("id=token,src={}", secret_file.display());
    let ssh_arg = format!("default={}", agent_sock.display());
    let out = f
        .build(df, &[], &["--secret", &secret_arg, "--ssh", &ssh_arg])
        .ok();
    assert!(step_output(&out.stderr).contains("secret-ok"));
    assert_eq!(f.file_in("test:1", "/sshinfo"), "600 0");
    // The secret is nowhere in the store's blobs.
    let mut hits = Vec::new();
    for e in std::fs::read_dir(f.root.path().join("blobs/sha256")).unwrap() {
        let path = e.unwrap().path();
        let bytes = fs_err::read(&path).unwrap();
        let text = decompress(&bytes);
        if text.windows(7).any(|w| w == b"hunter2") {
            hits.push(path);
        }
    }
    assert!(hits.is_empty(), "secret found in {hits:?}");
    assert!(!out.stderr.contains("hunter2"));
    // A required secret that is missing fails the step.
    let out = f
        .build(
            "FROM busybox:local\nRUN --mount=type=secret,id=nope,required true\n",
            &[],
            &[],
        )
        .fails_with(1);
    assert!(out.stderr.contains("secret nope"), "{}", out.stderr);
}

fn decompress(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        let _ = flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out);
        out
    } else {
        bytes.to_vec()
    }
}

#[test]
fn copy_storage_driver_runs_steps_too() {
    let f = skip_unless!(Fixture::with_driver("copy"));
    f.build(
        "FROM busybox:local\nRUN echo copy > /c && rm /etc/group\n",
        &[],
        &[],
    )
    .ok();
    let mut paths = f.last_layer_paths("test:1");
    paths.sort();
    assert_eq!(paths, ["c", "etc/", "etc/.wh.group"]);
    assert_eq!(f.file_in("test:1", "/c"), "copy");
}

/// The same RUN through kiln's sandbox and through runc and crun gives the same layer.
#[test]
fn oci_runtimes_give_the_same_layer() {
    let f = skip_unless!(Fixture::new());
    // USER app: identity, groups and HOME as each runtime sets them end up in the layer.
    let df = "FROM busybox:local\nRUN echo same > /f && mkdir -p /d/e && chmod 700 /d\nUSER app\nRUN id > /tmp/id && echo \"$HOME $(pwd)\" >> /tmp/id\n";
    let mut digests = Vec::new();
    for rt in [None, Some("runc"), Some("crun")] {
        let mut extra = vec![];
        if let Some(rt) = rt {
            if harness::which(rt).is_err() {
                harness::report_skip(&Skip::new(format!("{rt} is not installed")));
                continue;
            }
            extra.extend(["--runtime", rt]);
        }
        let out = kiln_env(
            f.root.path(),
            &{
                write_files(f.ctx.path(), &[("Dockerfile", df)]);
                let mut a = vec!["build", "-q"];
                a.extend_from_slice(&extra);
                a.push(f.ctx.path().to_str().unwrap());
                a
            },
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        )
        .ok();
        digests.push((rt.unwrap_or("kiln"), out.stdout.trim().to_owned()));
    }
    assert!(
        digests.len() >= 2,
        "at least one OCI runtime ran: {digests:?}"
    );
    // The flag is honoured: a runtime that does not exist fails the step.
    let out = f
        .kiln(&[
            "build",
            "--runtime",
            "/nonexistent/kiln-rt",
            f.ctx.path().to_str().unwrap(),
        ])
        .fails_with(1);
    assert!(out.stderr.contains("kiln-rt"), "{}", out.stderr);
    assert!(digests.windows(2).all(|w| w[0].1 == w[1].1), "{digests:?}");
}

/// A kiln killed in the middle of a RUN leaves no container running (the container dies with
/// it) and no mount that the next kiln does not sweep.
#[test]
fn a_killed_build_leaves_no_container_and_no_mount() {
    let f = skip_unless!(Fixture::new());
    let marker = format!("kiln-killed-build-{}", std::process::id());
    write_files(
        f.ctx.path(),
        &[(
            "Dockerfile",
            &format!("FROM busybox:local\nRUN sh -c 'sleep 1000; echo {marker}'\n"),
        )],
    );
    let mut child = harness::kiln_cmd(f.root.path())
        .env("KILN_STORAGE_DRIVER", f.driver)
        .args(["build", "--progress=plain", f.ctx.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = |m: &str| {
        fs_err::read_dir("/proc").unwrap().flatten().any(|e| {
            fs_err::read(e.path().join("cmdline"))
                .map(|c| c.windows(m.len()).any(|w| w == m.as_bytes()))
                .unwrap_or(false)
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !running(&marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let killed = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while running(&marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "the container outlived kiln"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The next kiln that needs a filesystem sweeps the dead process's mounts.
    f.build("FROM busybox:local\nRUN true\n", &[], &[]).ok();
    let mounts = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(f.root.path().to_str().unwrap()),
        "{mounts}"
    );
    // ... and the killed kiln's (empty) container cgroups.
    let left = crate::support::run_tool(std::process::Command::new("find").args([
        "/sys/fs/cgroup",
        "-maxdepth",
        "8",
        "-type",
        "d",
        "-name",
        &format!("kiln-run-{killed}-*"),
    ]));
    assert_eq!(left.trim(), "", "cgroups left by the killed kiln");
}
