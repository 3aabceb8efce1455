//! The two builders under comparison, each with the same busybox base image `busybox:local`:
//! kiln (a store per case) and buildah (one private storage for the whole suite, `vfs` driver, so
//! nothing touches the machine's own container storage).
//!
//! buildah builds with `--isolation chroot` (no OCI runtime or cgroup setup needed; chroot
//! isolation cannot take `--network none`, and no case uses the network), `--format docker` (the
//! OCI config has no `Healthcheck`, `OnBuild` or `Shell`), `--pull=never` and
//! `--identity-label=false` (no `io.buildah.version` label). Its result's root filesystem is read
//! through `podman image mount` on the same storage: `buildah from` would run the image's
//! `ONBUILD` triggers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::tree::{self, Tree};
use crate::harness::{self, Skip};

/// The `PATH` BuildKit gives an image that has none (`FROM scratch`), which kiln's base has.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a case is built (the same for both tools).
pub struct BuildArgs<'a> {
    pub ctx: &'a Path,
    pub dockerfile: &'a str,
    pub tag: &'a str,
    pub build_args: &'a BTreeMap<String, String>,
    /// `--build-context NAME=DIR`, `DIR` relative to `ctx`.
    pub build_contexts: &'a BTreeMap<String, String>,
    pub target: Option<&'a str>,
}

impl BuildArgs<'_> {
    /// The `--build-context` flag values, directories made absolute.
    fn context_flags(&self) -> Vec<String> {
        self.build_contexts
            .iter()
            .map(|(name, dir)| format!("{name}={}", self.ctx.join(dir).display()))
            .collect()
    }
}

/// Runs `cmd`; `Err` with its output unless it succeeded.
fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("could not run {shown}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{shown} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            tail(&stdout),
            tail(&String::from_utf8_lossy(&out.stderr))
        ))
    }
}

/// The last 40 lines of `text`.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The build context of the base image: `FROM scratch` + `COPY rootfs/ /`, the rootfs being
/// `harness::rootfs::busybox_rootfs()`.
pub struct BaseContext {
    rootfs: harness::rootfs::BusyboxRootfs,
}

impl BaseContext {
    pub fn new() -> Result<Self, Skip> {
        let rootfs = harness::rootfs::busybox_rootfs()?;
        fs_err::write(
            rootfs.scratch().join("Dockerfile"),
            "FROM scratch\nCOPY rootfs/ /\n",
        )
        .map_err(|e| Skip::new(e.to_string()))?;
        Ok(Self { rootfs })
    }

    fn ctx(&self) -> &Path {
        self.rootfs.scratch()
    }

    fn rootfs(&self) -> &Path {
        self.rootfs.path()
    }
}

/// A kiln store holding `busybox:local`.
pub struct Kiln {
    root: tempfile::TempDir,
}

impl Kiln {
    pub fn new(base: &BaseContext) -> Result<Self, String> {
        let kiln = Self {
            root: harness::tempdir(),
        };
        kiln.cmd(&["build", "-q", "-t", "busybox:local"], base.ctx())?;
        Ok(kiln)
    }

    fn cmd(&self, args: &[&str], last: &Path) -> Result<String, String> {
        run(harness::kiln_cmd(self.root.path()).args(args).arg(last))
    }

    /// Builds and tags the image; with `local`, also writes its root filesystem there.
    pub fn build(&self, b: &BuildArgs<'_>, local: Option<&Path>) -> Result<(), String> {
        let file = b.ctx.join(b.dockerfile);
        let mut args: Vec<String> = vec![
            "build".into(),
            "--progress=plain".into(),
            "-f".into(),
            file.to_string_lossy().into_owned(),
            "-o".into(),
            format!("type=image,name={}", b.tag),
        ];
        if let Some(dir) = local {
            args.push("-o".into());
            args.push(format!("type=local,dest={}", dir.display()));
        }
        for (k, v) in b.build_args {
            args.push("--build-arg".into());
            args.push(format!("{k}={v}"));
        }
        for c in b.context_flags() {
            args.push("--build-context".into());
            args.push(c);
        }
        if let Some(t) = b.target {
            args.push("--target".into());
            args.push(t.into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(&args, b.ctx).map(drop)
    }

    /// The `config` object of the image's config.
    pub fn config(&self, tag: &str) -> Result<Value, String> {
        let out = run(harness::kiln_cmd(self.root.path()).args(["image", "inspect", tag]))?;
        let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let id = v[0]["Id"]
            .as_str()
            .ok_or_else(|| format!("no Id in {out}"))?;
        let hex = id.strip_prefix("sha256:").ok_or("Id is not sha256")?;
        let bytes = fs_err::read(self.root.path().join("blobs/sha256").join(hex))
            .map_err(|e| e.to_string())?;
        let cfg: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(cfg["config"].clone())
    }
}

/// buildah (and podman, to read images) on a private storage holding `busybox:local`.
pub struct Buildah {
    storage: tempfile::TempDir,
    buildah: PathBuf,
    podman: PathBuf,
}

impl Buildah {
    /// `Skip` when buildah or podman is missing; `Err` when the base image cannot be made.
    pub fn new(base: &BaseContext) -> Result<Result<Self, String>, Skip> {
        let buildah = harness::which("buildah")
            .map_err(|s| Skip::new(format!("{s} (apt-get install buildah podman)")))?;
        let podman = harness::which("podman")
            .map_err(|s| Skip::new(format!("{s} (apt-get install buildah podman)")))?;
        let b = Self {
            storage: harness::tempdir(),
            buildah,
            podman,
        };
        Ok(b.make_base(base.rootfs()).map(|()| b))
    }

    fn global(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("--root")
            .arg(self.storage.path().join("root"))
            .arg("--runroot")
            .arg(self.storage.path().join("runroot"))
            .arg("--storage-driver")
            .arg("vfs")
            .env("TMPDIR", self.storage.path());
        cmd
    }

    fn buildah(&self) -> Command {
        self.global(&self.buildah)
    }

    fn podman(&self) -> Command {
        let mut cmd = self.global(&self.podman);
        cmd.args(["--cgroup-manager", "cgroupfs", "--events-backend", "none"])
            .arg("--tmpdir")
            .arg(self.storage.path().join("libpod"));
        cmd
    }

    /// `busybox:local`: the rootfs copied (`cp -a`, modes kept) into a scratch container and
    /// owned by 0:0 (as kiln's `COPY rootfs/ /` from the context makes it), with BuildKit's
    /// default `PATH`.
    fn make_base(&self, rootfs: &Path) -> Result<(), String> {
        let ctr = run(self.buildah().args(["from", "scratch"]))?;
        let ctr = ctr.trim();
        let mnt = run(self.buildah().args(["mount", ctr]))?;
        let mut from = rootfs.as_os_str().to_owned();
        from.push("/.");
        run(Command::new("cp").arg("-a").arg(from).arg(mnt.trim()))?;
        run(Command::new("chown")
            .args(["-R", "-h", "0:0"])
            .arg(mnt.trim()))?;
        run(self.buildah().args(["config", "--env", DEFAULT_PATH, ctr]))?;
        run(self.buildah().args([
            "commit",
            "-q",
            "--format",
            "docker",
            "--identity-label=false",
            ctr,
            "busybox:local",
        ]))?;
        run(self.buildah().args(["rm", ctr])).map(drop)
    }

    /// Builds `dockerfile` (relative to the context) and tags the result.
    pub fn build(&self, b: &BuildArgs<'_>) -> Result<(), String> {
        let mut cmd = self.buildah();
        cmd.args([
            "build",
            "--isolation",
            "chroot",
            "--pull=never",
            "--format",
            "docker",
            "--identity-label=false",
            "-t",
            b.tag,
            "-f",
        ])
        .arg(b.ctx.join(b.dockerfile));
        for (k, v) in b.build_args {
            cmd.arg("--build-arg").arg(format!("{k}={v}"));
        }
        for c in b.context_flags() {
            cmd.arg("--build-context").arg(c);
        }
        if let Some(t) = b.target {
            cmd.args(["--target", t]);
        }
        cmd.arg(b.ctx);
        run(&mut cmd).map(drop)
    }

    /// The image's root filesystem.
    pub fn tree(&self, tag: &str) -> Result<Tree, String> {
        let dir = run(self.podman().args(["image", "mount", tag]))?;
        let t = tree::snapshot(Path::new(dir.trim()));
        run(self.podman().args(["image", "unmount", tag]))?;
        t
    }

    /// The `config` object of the image's Docker-format config.
    pub fn config(&self, tag: &str) -> Result<Value, String> {
        let out = run(self.buildah().args(["inspect", "--type", "image", tag]))?;
        let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        Ok(v["Docker"]["config"].clone())
    }
}
