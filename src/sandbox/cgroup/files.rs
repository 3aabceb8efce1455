//! File access on cgroup directories, behind [`CgroupFs`] so that unit tests can run the
//! cgroup logic against a plain temporary directory.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::sandbox::{Result, SandboxError};

/// The file operations on cgroup directories, behind a trait so the unit tests can run the
/// v2 logic against a plain temporary directory (where files do not appear by themselves).
pub(super) trait CgroupFs: Send + Sync + std::fmt::Debug {
    fn mkdir(&self, path: &Path) -> std::io::Result<()>;
    fn rmdir(&self, path: &Path) -> std::io::Result<()>;
    /// One `write(2)` of `value` (cgroup files take a value per write).
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()>;
    fn read(&self, path: &Path) -> std::io::Result<String>;
    fn exists(&self, path: &Path) -> bool;
}

/// The real cgroup file systems.
#[derive(Debug)]
pub(super) struct RealFs;

pub(super) static REAL_FS: RealFs = RealFs;

impl CgroupFs for RealFs {
    fn mkdir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::DirBuilder::new().create(path)
    }

    fn rmdir(&self, path: &Path) -> std::io::Result<()> {
        rustix::fs::rmdir(path).map_err(std::io::Error::from)
    }

    fn write(&self, path: &Path, value: &str) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        let written = file.write(value.as_bytes())?;
        if written == value.len() {
            Ok(())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write of `{value}`"),
            ))
        }
    }

    fn read(&self, path: &Path) -> std::io::Result<String> {
        let mut text = String::new();
        std::fs::File::open(path)?.read_to_string(&mut text)?;
        Ok(text)
    }

    fn exists(&self, path: &Path) -> bool {
        rustix::fs::access(path, rustix::fs::Access::EXISTS).is_ok()
    }
}

pub(super) fn write_file(fs: &dyn CgroupFs, path: &Path, value: &str) -> Result<()> {
    fs.write(path, value)
        .map_err(|source| SandboxError::Cgroup {
            path: path.to_path_buf(),
            source: std::io::Error::new(source.kind(), format!("writing `{value}`: {source}")),
        })
}

pub(super) fn read_to_string(fs: &dyn CgroupFs, path: &Path) -> Result<String> {
    fs.read(path).map_err(|source| SandboxError::Cgroup {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn read_procs(fs: &dyn CgroupFs, dir: &Path) -> Result<Vec<i32>> {
    let text = read_to_string(fs, &dir.join("cgroup.procs"))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// `rmdir`, retried for a moment while the kernel still counts an exited process (`EBUSY`).
pub(super) fn remove_dir(fs: &dyn CgroupFs, path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut pause = Duration::from_micros(100);
    loop {
        match fs.rmdir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(SandboxError::Cgroup {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}
