//! RUN steps: the command runs in the sandbox on a writable snapshot of the stage's filesystem,
//! and what it changed becomes the step's layer.
//!
//! - The process: [`command`] (argv through the stage's `SHELL`, exec form, heredocs; the
//!   environment is the image's ENV plus the stage's ARGs and the proxy build args, as BuildKit
//!   gives it), the stage's `USER` resolved from the snapshot's `/etc/passwd` and `/etc/group`,
//!   the working directory (created when missing, as runc does).
//! - The sandbox: Docker's default spec ([`crate::sandbox::spec`]) with hostname
//!   `buildkitsandbox`, `/etc/hosts` and `/etc/resolv.conf` bind-mounted from files outside the
//!   snapshot (so they never land in the layer), and `--network`: `none` and `default` get a
//!   private network namespace with only loopback (until the networks issue adds a bridge),
//!   `host` shares the host's.
//! - `--mount`s: [`mounts`]. Mount targets missing from the image are created as stubs
//!   before the run and removed after it, so they are not part of the layer either.
//! - Output is streamed line by line to the reporter; a failing RUN reports its command, its exit
//!   code and the last 20 lines of its output.
//!
//! Not responsible for: running processes (the sandbox), diffing (the snapshotter).

pub mod cache_mount;
pub mod command;
pub mod mounts;
pub mod secrets;
pub mod ssh;

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use frontend::instructions::RunCommand;
use frontend::{Mount, NetworkMode, SecurityMode};

use super::{StepEnv, StepError};
use crate::image::ImageRef;
use crate::progress::{Event, OutputStream, StepId};
use crate::sandbox::{self, Backend, ExitStatus, StdioConfig};
use crate::solver::rootfs::{self, StepLayer};
use crate::solver::stage::StageState;
pub use secrets::{SecretError, Secrets, SshAgents};

/// How many lines of a failing step's output the error repeats.
pub const FAILURE_TAIL_LINES: usize = 20;

/// The hostname RUN steps see (BuildKit's).
pub const HOSTNAME: &str = "buildkitsandbox";

/// Settings of a build's RUN steps.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub backend: Backend,
    pub secrets: Secrets,
    pub ssh: SshAgents,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            secrets: Secrets::default(),
            ssh: SshAgents::default(),
        }
    }
}

/// What a RUN step may use besides the [`StepEnv`].
pub struct RunEnv<'a> {
    pub step: &'a StepEnv<'a>,
    pub run: &'a RunSettings,
    pub build_args: &'a BTreeMap<String, String>,
    /// Stages built so far (for `--mount from=`), by index.
    pub stages: &'a BTreeMap<usize, StageState>,
    /// Stage names (lowercase) to indexes.
    pub stage_names: &'a BTreeMap<String, usize>,
    pub step_id: StepId,
    /// The instruction as written (for layer reuse).
    pub instruction: &'a str,
    /// Where the step is (the cache's lookups and `CACHED` mark).
    pub place: &'a crate::solver::steps::StepPlace<'a>,
}

impl RunEnv<'_> {
    /// `from=` of a mount: a stage (by name or index) or an image.
    fn stage_or_image(&self, from: &str) -> Result<StageState, StepError> {
        let index = from
            .parse::<usize>()
            .ok()
            .or_else(|| self.stage_names.get(&from.to_ascii_lowercase()).copied());
        if let Some(i) = index {
            return self.stages.get(&i).cloned().ok_or_else(|| {
                StepError::Invalid(format!("stage {from} was not built before it was used"))
            });
        }
        let r = ImageRef::parse(from).map_err(|e| StepError::BaseImage {
            reference: from.to_owned(),
            source: e.into(),
        })?;
        super::super::base::image_state(self.step, &r, "", &self.step_id)
    }
}

/// Why a RUN's process failed: BuildKit's words, then the tail of the output.
#[derive(Debug, thiserror::Error)]
#[error("process \"{command}\" did not complete successfully: {}{}", status_text(*.status), tail_text(.tail))]
pub struct ProcessFailed {
    pub command: String,
    pub status: ExitStatus,
    pub tail: Vec<String>,
}

fn status_text(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(c) => format!("exit code: {c}"),
        ExitStatus::Signal(s) => format!("killed by signal {s}"),
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut s = format!("\nlast {} lines of output:", tail.len());
    for line in tail {
        s.push_str("\n  | ");
        s.push_str(line);
    }
    s
}

fn sandbox_err(e: sandbox::SandboxError) -> StepError {
    StepError::Sandbox(Box::new(e))
}

/// The cgroup a RUN's container gets is `kiln/<id>` (`sandbox::linux`), and the id is
/// `kiln-run-<pid>-<n>`: a kiln that was killed leaves those directories behind (its containers
/// die with it, so they are empty). The first RUN of each kiln process removes the ones whose
/// process is gone.
fn sweep_stale_cgroups() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        sandbox::cgroup::remove_stale("kiln", |name| {
            let Some(rest) = name.strip_prefix("kiln-run-") else {
                return false;
            };
            let Some((pid, _)) = rest.split_once('-') else {
                return false;
            };
            pid.parse::<u32>().is_ok_and(|pid| {
                pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
            })
        });
    });
}

/// Run one RUN step.
pub fn run(env: &RunEnv<'_>, state: &mut StageState, run: &RunCommand) -> Result<(), StepError> {
    let snapshot = state.clone();
    let lookup = move |name: &str| snapshot.lookup(name);
    let mut mounts: Vec<Mount> = Vec::new();
    for m in &run.mounts {
        mounts.push(match &m.parsed {
            Some(p) => p.clone(),
            None => Mount::parse_word(&m.raw, &lookup)
                .map_err(|e| StepError::Invalid(format!("--mount: {e}")))?,
        });
    }
    let network = match &run.network {
        None => NetworkMode::Default,
        Some(f) => match f.parsed {
            Some(n) => n,
            None => {
                let v = f.raw.expand(&lookup)?;
                NetworkMode::parse(&v).map_err(|e| StepError::Invalid(e.to_string()))?
            }
        },
    };
    if let Some(f) = &run.security {
        let mode = match f.parsed {
            Some(m) => m,
            None => SecurityMode::parse(&f.raw.expand(&lookup)?)
                .map_err(|e| StepError::Invalid(e.to_string()))?,
        };
        if mode == SecurityMode::Insecure {
            return Err(StepError::Invalid(
                "RUN --security=insecure is not supported: kiln runs every step in its sandbox"
                    .into(),
            ));
        }
    }
    sweep_stale_cgroups();
    let invocation = command::invocation(state, run);
    let created_by = command::created_by(state, &invocation.argv);
    let workdir = state.workdir();

    let step = RunPlan {
        invocation,
        workdir,
        network,
        mounts,
    };
    let key = preimage(env, state, &step)?;
    let layer = crate::solver::steps::cached(env.step, env.place, &key, || {
        execute_on_snapshot(env, state, &step)
    })?;
    crate::solver::steps::push_layer(env.step, state, layer, created_by);
    Ok(())
}

/// A RUN with its words expanded: what its key covers and what runs.
struct RunPlan {
    invocation: command::Invocation,
    workdir: String,
    network: NetworkMode,
    mounts: Vec<Mount>,
}

/// The cache key's preimage of a RUN: the parent filesystem, the command (argv and heredoc
/// script), the environment the process gets from the stage (ENV, the stage's ARGs; not the
/// proxy build args, which BuildKit leaves out of the key too, and not HOME, which comes from
/// the parent filesystem), USER, WORKDIR, the network mode, and the mounts with the identity of
/// their sources: the content hash of a bind-mounted context directory, the ChainID of a
/// stage or image. Secrets and SSH agents are not part of it (as in BuildKit), nor are cache
/// mounts' contents.
fn preimage(
    env: &RunEnv<'_>,
    state: &StageState,
    step: &RunPlan,
) -> Result<crate::cache::Preimage, StepError> {
    let RunPlan {
        invocation,
        workdir,
        network,
        mounts,
    } = step;
    let mut key =
        crate::solver::steps::preimage(env.step, "run", Some(&state.config.rootfs.diff_ids));
    key.field("argv", &invocation.argv)
        .field("script", &invocation.script)
        .field("env", command::environment(state, &BTreeMap::new(), ""))
        .field("user", &state.config.config.user)
        .field("workdir", workdir)
        .field("network", format!("{network:?}"))
        .field("mounts", mounts);
    let mut sources = Vec::new();
    for m in mounts {
        if let Mount::Bind { source, from, .. } = m {
            let identity = match mounts::bind_from(env, from.as_deref())? {
                mounts::BindFrom::Local(ctx) => {
                    let src = source.as_deref().unwrap_or("/");
                    let spec = crate::solver::steps::copy::CopySpec::default();
                    let inputs = crate::solver::steps::copy::selection(
                        &[crate::solver::steps::copy::Source {
                            tree: ctx,
                            path: src.to_owned(),
                            wildcards: false,
                            unpack: false,
                        }],
                        &spec,
                        crate::solver::steps::copy::Owners::Root,
                    )?;
                    let digest = crate::solver::steps::inputs_digest(env.step, &inputs)?;
                    format!("local:{digest}")
                }
                mounts::BindFrom::State(s) => {
                    let chain = snapshotter::ChainId::of_stack(&s.config.rootfs.diff_ids);
                    format!(
                        "from:{}",
                        chain.map_or("scratch".to_owned(), |c| c.to_string())
                    )
                }
            };
            sources.push(identity);
        }
    }
    key.field("mount_sources", sources);
    Ok(key)
}

/// Run the command on a snapshot of the stage and make its layer (a cache miss).
fn execute_on_snapshot(
    env: &RunEnv<'_>,
    state: &StageState,
    step: &RunPlan,
) -> Result<StepLayer, StepError> {
    let RunPlan {
        invocation,
        workdir,
        network,
        mounts,
    } = step;
    let network = *network;
    let sn = env.step.snapshots.get()?;
    let content = env.step.store.content();
    let diff_ids = state.config.rootfs.diff_ids.clone();
    let parent = rootfs::ensure_chain(sn, content, &state.layers, &diff_ids)?;
    let mut step_mounts = mounts::StepMounts::prepare(env, Some(sn), workdir, mounts)?;
    let files = EtcFiles::write(env, network)?;
    if let Some((name, body)) = &invocation.script {
        step_mounts.mounts.push(files.heredoc_script(name, body)?);
    }
    let user_text = state.config.config.user.clone().unwrap_or_default();
    let layer = rootfs::process_step(
        sn,
        content,
        parent.as_ref(),
        &diff_ids,
        rootfs::LayerSettings {
            epoch: env.step.epoch,
            compression: env.step.compression,
            reuse: Some(env.step.reuse(env.instruction)),
            seed: None,
        },
        env.step.snapshots.mounts_dir(),
        |root: &Path| -> Result<(), StepError> {
            let user = sandbox::user::resolve(root, &user_text).map_err(sandbox_err)?;
            let mut process_env = command::environment(state, env.build_args, &user.home);
            process_env.extend(step_mounts.env.iter().cloned());
            let cfg = sandbox::spec::SandboxConfig {
                rootfs: root.to_owned(),
                args: invocation.argv.clone(),
                env: process_env,
                cwd: workdir.clone(),
                user,
                hostname: HOSTNAME.to_owned(),
                network: match network {
                    NetworkMode::Host => sandbox::spec::Network::Host,
                    NetworkMode::None | NetworkMode::Default => sandbox::spec::Network::Private,
                },
                mounts: step_mounts.mounts.clone(),
                etc_files: files.etc_files(),
                ..Default::default()
            };
            let spec = sandbox::spec::build(&cfg).map_err(sandbox_err)?;
            let stubs = sandbox::linux::prepare_mountpoints(&spec).map_err(sandbox_err)?;
            let result = execute(env, &spec, &invocation.argv);
            let removed = stubs.remove().map_err(sandbox_err);
            result?;
            removed
        },
    )?;
    drop(step_mounts);
    Ok(layer)
}

/// Start the process, stream its output, wait for it.
fn execute(env: &RunEnv<'_>, spec: &sandbox::Spec, argv: &[String]) -> Result<(), StepError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = format!(
        "kiln-run-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let stdio = StdioConfig {
        stdin: sandbox::Stdio::Null,
        stdout: sandbox::Stdio::Pipe,
        stderr: sandbox::Stdio::Pipe,
    };
    let mut container = sandbox::start(&env.run.backend, &id, spec, stdio).map_err(sandbox_err)?;
    // A failure elsewhere in the build kills this step's container (its init, and with it the
    // whole pid namespace).
    let _kill = env
        .step
        .cancel
        .kill_on_cancel(container.pid())
        .map_err(|e| StepError::Invalid(format!("watching the container: {e}")))?;
    let started = Instant::now();
    let tail = std::sync::Mutex::new(VecDeque::with_capacity(FAILURE_TAIL_LINES));
    let out = container.stdout.take();
    let err = container.stderr.take();
    std::thread::scope(|s| {
        let tail = &tail;
        if let Some(out) = out {
            s.spawn(move || pump(env, out, OutputStream::Stdout, started, tail));
        }
        if let Some(err) = err {
            s.spawn(move || pump(env, err, OutputStream::Stderr, started, tail));
        }
    });
    let status = container.wait().map_err(sandbox_err)?;
    if status.success() {
        return Ok(());
    }
    Err(StepError::Process(ProcessFailed {
        command: argv.join(" "),
        status,
        tail: tail
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_iter()
            .collect(),
    }))
}

/// Forward one stream line by line (a partial last line too) and keep the tail.
fn pump(
    env: &RunEnv<'_>,
    mut from: std::fs::File,
    stream: OutputStream,
    started: Instant,
    tail: &std::sync::Mutex<VecDeque<String>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let emit = |line: &[u8]| {
        let line = String::from_utf8_lossy(line)
            .trim_end_matches('\r')
            .to_owned();
        {
            let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
            if t.len() == FAILURE_TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line.clone());
        }
        env.step.reporter.event(Event::StepOutput {
            step: env.step_id.clone(),
            stream,
            elapsed: started.elapsed(),
            line,
        });
    };
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    emit(&pending[..i]);
                    pending.drain(..=i);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if !pending.is_empty() {
        emit(&pending);
    }
}

/// `/etc/hosts`, `/etc/resolv.conf` (and a heredoc script) written outside the snapshot and
/// bind-mounted read-only, as BuildKit provides them.
struct EtcFiles {
    dir: tempfile::TempDir,
}

impl EtcFiles {
    fn write(env: &RunEnv<'_>, network: NetworkMode) -> Result<Self, StepError> {
        let err = |e: std::io::Error| StepError::Invalid(format!("preparing /etc/hosts: {e}"));
        let parent = env.step.snapshots.mounts_dir();
        fs_err::create_dir_all(parent).map_err(err)?;
        let dir = tempfile::Builder::new()
            .prefix("etc-")
            .tempdir_in(parent)
            .map_err(err)?;
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).map_err(err)?;
        let hosts = match network {
            NetworkMode::Host => fs_err::read_to_string("/etc/hosts").unwrap_or_default(),
            _ => format!(
                "127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            ),
        };
        fs_err::write(dir.path().join("hosts"), hosts).map_err(err)?;
        let host_resolv = fs_err::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = match network {
            NetworkMode::Host => host_resolv,
            _ => resolv_conf(&host_resolv),
        };
        fs_err::write(dir.path().join("resolv.conf"), resolv).map_err(err)?;
        Ok(Self { dir })
    }

    fn etc_files(&self) -> Vec<sandbox::spec::EtcFile> {
        ["hosts", "resolv.conf"]
            .iter()
            .map(|name| sandbox::spec::EtcFile {
                destination: format!("/etc/{name}"),
                source: self.dir.path().join(name),
            })
            .collect()
    }

    fn heredoc_script(
        &self,
        name: &str,
        body: &str,
    ) -> Result<oci_spec::runtime::Mount, StepError> {
        use std::os::unix::fs::PermissionsExt;
        let err =
            |e: std::io::Error| StepError::Invalid(format!("writing the heredoc script: {e}"));
        let dir = self.dir.path().join("pipes");
        fs_err::create_dir(&dir).map_err(err)?;
        let file = dir.join(name);
        fs_err::write(&file, body).map_err(err)?;
        fs_err::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
        oci_spec::runtime::MountBuilder::default()
            .destination(command::HEREDOC_SCRIPT_DIR)
            .typ("bind")
            .source(dir)
            .options(vec!["rbind".to_owned(), "ro".to_owned()])
            .build()
            .map_err(|e| StepError::Invalid(format!("mount {}: {e}", command::HEREDOC_SCRIPT_DIR)))
    }
}

/// The host's resolv.conf without loopback name servers (unreachable from a private network
/// namespace); Google's public servers when none is left, as BuildKit and Docker do.
fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        assert_eq!(
            resolv_conf("search lan\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n"),
            "search lan\nnameserver 10.0.0.1\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\n"),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn failure_message_has_the_tail() {
        let e = ProcessFailed {
            command: "/bin/sh -c false".into(),
            status: ExitStatus::Code(1),
            tail: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            e.to_string(),
            "process \"/bin/sh -c false\" did not complete successfully: exit code: 1\nlast 2 lines of output:\n  | a\n  | b"
        );
    }
}
