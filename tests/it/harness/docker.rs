//! A private Docker daemon for interoperability tests (`docker load` of kiln's archives):
//! Debian's `dockerd` with its own data root, exec root, pid file and socket in a temp dir,
//! the `vfs` storage driver (no mounts), no bridge and no iptables rules (no network changes
//! on the host), stopped by its PID and removed when the guard drops. The machine's own
//! daemon, if any, is never touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Skip, tempdir, which};

/// How long the daemon may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running private daemon.
pub struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
    /// dockerd creates `/run/docker/plugins` whatever its exec root; removed (if still empty)
    /// when it did not exist before.
    made_run_docker: bool,
}

impl Dockerd {
    /// Start one (root, `dockerd` and `docker` installed, else a [`Skip`]).
    pub fn start() -> Result<Self, Skip> {
        super::root_required()?;
        let dockerd = which("dockerd")?;
        which("docker")?;
        let dir = tempdir();
        let made_run_docker = !Path::new("/run/docker").exists();
        let log = std::fs::File::create(dir.path().join("dockerd.log"))
            .unwrap_or_else(|e| panic!("dockerd.log: {e}"));
        let log_err = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let p = |name: &str| dir.path().join(name);
        let child = Command::new(dockerd)
            .arg("--data-root")
            .arg(p("data"))
            .arg("--exec-root")
            .arg(p("exec"))
            .arg("--pidfile")
            .arg(p("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", p("docker.sock").display()))
            .args([
                "--storage-driver=vfs",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
            ])
            // Its own containerd, under the exec root.
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning dockerd: {e}"));
        let mut d = Dockerd {
            child,
            dir,
            made_run_docker,
        };
        let started = Instant::now();
        loop {
            if d.docker()
                .args(["version"])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return Ok(d);
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("dockerd exited with {status}:\n{}", d.log());
            }
            if started.elapsed() > READY_TIMEOUT {
                panic!(
                    "dockerd did not answer within {READY_TIMEOUT:?}:\n{}",
                    d.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A `docker` command talking to this daemon.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.dir.path().join("client"));
        cmd
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM: dockerd stops its containerd and unmounts what it mounted under its roots.
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Anything still mounted under our roots (exec root netns files, plugins).
        let root = self.dir.path().to_string_lossy().into_owned();
        if let Ok(info) = fs_err::read_to_string("/proc/self/mountinfo") {
            let mut mine: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(&root))
                .collect();
            mine.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in mine {
                let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
            }
        }
        if self.made_run_docker {
            let _ = std::fs::remove_dir("/run/docker/plugins");
            let _ = std::fs::remove_dir("/run/docker");
        }
    }
}
