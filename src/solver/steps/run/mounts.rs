//! RUN `--mount`s turned into runtime mounts: bind (from the context, a stage, an image or a
//! `--build-context`, writes discarded), cache (kept in the store), tmpfs, secret and ssh.
//! Everything a mount needs on the host (views, overlays, relays, secret files, cache locks) is
//! held by [`StepMounts`] and released when the step ends.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use frontend::Mount;
use oci_spec::runtime::{Mount as OciMount, MountBuilder};
use snapshotter::snapshot::{LocalSnapshotter, Snapshotter};

use super::RunEnv;
use super::cache_mount::{self, CacheLease};
use super::ssh::AgentRelay;
use crate::solver::context::{Context, Named};
use crate::solver::rootfs::{self, MountedView};
use crate::solver::steps::StepError;

/// Host resources behind a step's mounts; dropping it releases them (in reverse order).
#[derive(Default)]
pub struct StepMounts<'a> {
    pub mounts: Vec<OciMount>,
    /// `NAME=value` for `type=secret,env=NAME` and `SSH_AUTH_SOCK`.
    pub env: Vec<String>,
    relays: Vec<AgentRelay>,
    caches: Vec<CacheLease>,
    views: Vec<MountedView<'a>>,
    overlays: Vec<TempOverlay>,
    dirs: Vec<tempfile::TempDir>,
}

impl Drop for StepMounts<'_> {
    fn drop(&mut self) {
        // Overlays sit on views and context dirs: unmount them first.
        self.overlays.clear();
        self.views.clear();
        self.relays.clear();
        self.caches.clear();
        self.dirs.clear();
    }
}

/// A writable overlay on a read-only directory whose writes are thrown away.
struct TempOverlay {
    merged: PathBuf,
    _mountpoint: snapshotter::snapshot::TempMountpoint,
    _dir: tempfile::TempDir,
}

impl Drop for TempOverlay {
    fn drop(&mut self) {
        if rustix::mount::unmount(&self.merged, rustix::mount::UnmountFlags::empty()).is_err() {
            let _ = rustix::mount::unmount(&self.merged, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StepError {
    let what = what.into();
    move |e| StepError::Invalid(format!("{what}: {e}"))
}

/// `target` as the step sees it: relative targets (and none) are under WORKDIR; `/` is refused.
pub fn resolve_target(workdir: &str, target: Option<&str>) -> Result<String, StepError> {
    let joined = match target {
        Some(t) if t.starts_with('/') => t.to_owned(),
        Some(t) => format!("{}/{t}", workdir.trim_end_matches('/')),
        None => workdir.to_owned(),
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(StepError::Invalid(
            "cannot mount over the root directory `/`".into(),
        ));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn bind(dest: &str, source: &Path, readonly: bool) -> Result<OciMount, StepError> {
    let mut options = vec!["rbind".to_owned()];
    options.push(if readonly { "ro" } else { "rw" }.to_owned());
    MountBuilder::default()
        .destination(PathBuf::from(dest))
        .typ("bind")
        .source(source.to_owned())
        .options(options)
        .build()
        .map_err(|e| StepError::Invalid(format!("mount {dest}: {e}")))
}

/// A private directory for the step's host-side files (secrets, sockets, scripts): on
/// `/dev/shm` when there is one, so secrets never reach a disk.
fn private_dir(env: &RunEnv<'_>, mode: u32) -> Result<tempfile::TempDir, StepError> {
    let shm = Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_owned()
    } else {
        env.step.snapshots.mounts_dir().to_owned()
    };
    fs_err::create_dir_all(&parent).map_err(io_err("creating a private directory"))?;
    let dir = tempfile::Builder::new()
        .prefix("kiln-run-")
        .tempdir_in(&parent)
        .map_err(io_err("creating a private directory"))?;
    fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode))
        .map_err(io_err("creating a private directory"))?;
    Ok(dir)
}

/// What a bind mount's `from=` names.
pub enum BindFrom<'c> {
    /// A local context: the build context (no `from=`) or a `--build-context` directory.
    Local(&'c Context),
    /// The filesystem of a stage or an image.
    State(Box<crate::solver::stage::StageState>),
}

/// Resolve a bind mount's `from=`: a name that is not a stage may be a `--build-context`
/// (BuildKit resolves such a name as it resolves `COPY --from`).
pub fn bind_from<'c>(env: &RunEnv<'c>, from: Option<&str>) -> Result<BindFrom<'c>, StepError> {
    let is_stage = |f: &str| {
        f.parse::<usize>().is_ok() || env.stage_names.contains_key(&f.to_ascii_lowercase())
    };
    let named = from
        .filter(|f| !is_stage(f))
        .and_then(|f| env.step.named.get(f));
    Ok(match (from, named) {
        (None, _) => BindFrom::Local(env.step.ctx),
        (_, Some(Named::Dir(dir))) => BindFrom::Local(dir),
        (_, Some(Named::Image(r))) => BindFrom::State(Box::new(crate::solver::base::image_state(
            env.step,
            r,
            "",
            &env.step_id,
        )?)),
        (Some(from), None) => BindFrom::State(Box::new(env.stage_or_image(from)?)),
    })
}

impl<'a> StepMounts<'a> {
    /// Resolve every `--mount` of a step.
    pub fn prepare(
        env: &RunEnv<'a>,
        sn: Option<&'a LocalSnapshotter>,
        workdir: &str,
        mounts: &[Mount],
    ) -> Result<Self, StepError> {
        let mut out = StepMounts::default();
        let mut ssh_index = 0usize;
        for m in mounts {
            match m {
                Mount::Bind {
                    target,
                    source,
                    from,
                    readwrite,
                } => {
                    let dest = resolve_target(workdir, target.as_deref())?;
                    let dir = out.bind_source(env, sn, from.as_deref(), source.as_deref())?;
                    let dir = if *readwrite {
                        out.discard_writes(env, &dir)?
                    } else {
                        dir
                    };
                    out.mounts.push(bind(&dest, &dir, !*readwrite)?);
                }
                Mount::Cache {
                    id,
                    target,
                    source,
                    from,
                    sharing,
                    mode,
                    uid,
                    gid,
                    readonly,
                } => {
                    if source.is_some() || from.is_some() {
                        return Err(StepError::Unsupported(
                            "cache mounts with `from` or `source`",
                        ));
                    }
                    let dest = resolve_target(workdir, target.as_deref())?;
                    let lease = cache_mount::acquire(
                        &env.step.store.cache_mounts_dir(),
                        id,
                        *sharing,
                        *mode,
                        *uid,
                        *gid,
                    )
                    .map_err(io_err(format!("cache mount id={id}")))?;
                    out.mounts.push(bind(&dest, lease.path(), *readonly)?);
                    out.caches.push(lease);
                }
                Mount::Tmpfs {
                    target,
                    size,
                    readonly,
                } => {
                    let dest = resolve_target(workdir, target.as_deref())?;
                    let mut options = vec!["nosuid".to_owned(), "nodev".to_owned()];
                    if let Some(size) = size {
                        options.push(format!("size={size}"));
                    }
                    if *readonly {
                        options.push("ro".to_owned());
                    }
                    out.mounts.push(
                        MountBuilder::default()
                            .destination(PathBuf::from(&dest))
                            .typ("tmpfs")
                            .source(PathBuf::from("tmpfs"))
                            .options(options)
                            .build()
                            .map_err(|e| StepError::Invalid(format!("mount {dest}: {e}")))?,
                    );
                }
                Mount::Secret {
                    id,
                    target,
                    env: env_name,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    let Some(value) = env.run.secrets.get(id) else {
                        if *required {
                            return Err(StepError::Invalid(format!(
                                "secret {id}: not provided (pass it with --secret id={id},src=FILE)"
                            )));
                        }
                        continue;
                    };
                    if let Some(name) = env_name {
                        let name = if name.is_empty() { id } else { name };
                        let text = String::from_utf8_lossy(value.bytes());
                        out.env.push(format!("{name}={text}"));
                    }
                    if let Some(target) = target {
                        let dest = resolve_target(workdir, Some(target))?;
                        let dir = private_dir(env, 0o711)?;
                        let file = dir.path().join("secret");
                        fs_err::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&file)
                            .and_then(|mut f| std::io::Write::write_all(&mut f, value.bytes()))
                            .map_err(io_err(format!("secret {id}")))?;
                        std::os::unix::fs::chown(&file, Some(*uid), Some(*gid))
                            .map_err(io_err(format!("secret {id}")))?;
                        fs_err::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                            .map_err(io_err(format!("secret {id}")))?;
                        out.mounts.push(bind(&dest, &file, true)?);
                        out.dirs.push(dir);
                    }
                }
                Mount::Ssh {
                    id,
                    target,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    let Some(agent) = env.run.ssh.get(id) else {
                        if *required {
                            return Err(StepError::Invalid(format!(
                                "ssh agent {id}: not provided (pass it with --ssh {id})"
                            )));
                        }
                        continue;
                    };
                    let dest = match target {
                        Some(t) => resolve_target(workdir, Some(t))?,
                        None => frontend::instructions::mount::ssh_default_target(ssh_index),
                    };
                    let dir = private_dir(env, 0o711)?;
                    let relay =
                        AgentRelay::start(&dir.path().join("agent.sock"), agent, *uid, *gid, *mode)
                            .map_err(io_err(format!("ssh agent {id}")))?;
                    out.mounts.push(bind(&dest, relay.socket(), false)?);
                    if ssh_index == 0 {
                        out.env.push(format!("SSH_AUTH_SOCK={dest}"));
                    }
                    ssh_index += 1;
                    out.relays.push(relay);
                    out.dirs.push(dir);
                }
            }
        }
        // Parents before children, as BuildKit orders mounts.
        out.mounts
            .sort_by_key(|m| m.destination().components().count());
        Ok(out)
    }

    /// The host directory a bind mount shows.
    fn bind_source(
        &mut self,
        env: &RunEnv<'a>,
        sn: Option<&'a LocalSnapshotter>,
        from: Option<&str>,
        source: Option<&str>,
    ) -> Result<PathBuf, StepError> {
        let source = source.unwrap_or("/");
        let state = match bind_from(env, from)? {
            BindFrom::Local(ctx) => return self.context_source(env, ctx, source),
            BindFrom::State(state) => state,
        };
        let sn = sn.ok_or_else(|| StepError::Invalid("no snapshotter".into()))?;
        let content = env.step.store.content();
        let name = rootfs::ensure_chain(sn, content, &state.layers, &state.config.rootfs.diff_ids)?;
        let view = rootfs::mount_view(sn, name.as_ref(), env.step.snapshots.mounts_dir())?;
        let inside = crate::solver::inroot::InRoot::open(view.path())?.resolve(source)?;
        let path = view.path().join(inside);
        self.views.push(view);
        let _ = sn.driver();
        Ok(path)
    }

    /// `source` in a local context (the build context or a `--build-context` directory) as its
    /// `.dockerignore` leaves it.
    fn context_source(
        &mut self,
        env: &RunEnv<'a>,
        ctx: &Context,
        source: &str,
    ) -> Result<PathBuf, StepError> {
        let path = ctx.resolve(source).map_err(context_err)?;
        if !ctx.has_ignore_rules() {
            return Ok(path.host().to_owned());
        }
        // The filtered context: only what .dockerignore keeps.
        let dir = tempfile::Builder::new()
            .prefix("ctx-")
            .tempdir_in(ensure(env.step.snapshots.mounts_dir())?)
            .map_err(io_err("copying the build context"))?;
        let root = dir.path().join("ctx");
        copy_filtered(ctx, &path, &root)?;
        self.dirs.push(dir);
        Ok(root)
    }

    /// An overlay on `lower` whose upper layer is discarded after the step (`rw` binds).
    fn discard_writes(&mut self, env: &RunEnv<'a>, lower: &Path) -> Result<PathBuf, StepError> {
        let dir = tempfile::Builder::new()
            .prefix("rw-")
            .tempdir_in(ensure(env.step.snapshots.mounts_dir())?)
            .map_err(io_err("preparing a writable bind mount"))?;
        let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
        // Named for this process, so a killed kiln's mount is swept by the next one.
        let mountpoint = snapshotter::snapshot::mountpoint_in(env.step.snapshots.mounts_dir())
            .map_err(|e| StepError::Invalid(format!("preparing a writable bind mount: {e}")))?;
        let merged = mountpoint.path().to_owned();
        for d in [&upper, &work] {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(d)
                .map_err(io_err("preparing a writable bind mount"))?;
        }
        if !lower.is_dir() {
            return Err(StepError::Invalid(format!(
                "a writable bind mount needs a directory; `{}` is not one",
                lower.display()
            )));
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let data = std::ffi::CString::new(data)
            .map_err(|_| StepError::Invalid("a path with a NUL byte".into()))?;
        rustix::mount::mount(
            "overlay",
            &merged,
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|e| {
            StepError::Invalid(format!("writable bind mount of `{}`: {e}", lower.display()))
        })?;
        self.overlays.push(TempOverlay {
            merged: merged.clone(),
            _mountpoint: mountpoint,
            _dir: dir,
        });
        Ok(merged)
    }
}

fn context_err(e: crate::solver::context::ContextError) -> StepError {
    StepError::Invalid(format!("bind mount from the build context: {e}"))
}

fn ensure(dir: &Path) -> Result<&Path, StepError> {
    fs_err::create_dir_all(dir).map_err(io_err("creating the mounts directory"))?;
    Ok(dir)
}

/// Copy what the ignore file keeps of `from` into `to`.
fn copy_filtered(
    ctx: &crate::solver::context::Context,
    from: &crate::solver::context::ContextPath,
    to: &Path,
) -> Result<(), StepError> {
    let err = io_err("copying the build context");
    if !from.host().is_dir() {
        fs_err::copy(from.host(), to).map_err(err)?;
        return Ok(());
    }
    fs_err::create_dir_all(to).map_err(io_err("copying the build context"))?;
    for entry in ctx.walk(from).map_err(context_err)? {
        let dest = to.join(&entry.rel);
        let ft = entry.meta.file_type();
        let done = if ft.is_dir() {
            fs_err::create_dir_all(&dest)
        } else if ft.is_symlink() {
            fs_err::read_link(&entry.host).and_then(|t| fs_err::os::unix::fs::symlink(t, &dest))
        } else {
            fs_err::copy(&entry.host, &dest).map(|_| ())
        };
        done.map_err(io_err("copying the build context"))?;
        if !ft.is_symlink() {
            fs_err::set_permissions(&dest, entry.meta.permissions())
                .map_err(io_err("copying the build context"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(resolve_target("/app", Some("cache")).unwrap(), "/app/cache");
        assert_eq!(resolve_target("/app", Some("/x/../y/")).unwrap(), "/y");
        assert_eq!(resolve_target("/app", None).unwrap(), "/app");
        assert!(resolve_target("/", None).is_err());
        assert!(resolve_target("/app", Some("..")).is_err());
    }
}
