//! A throw-away OCI distribution registry for tests: Debian's `docker-registry` (distribution
//! v2.8) listening on 127.0.0.1 on a free port, storing blobs in a temp dir, over plain HTTP or
//! ([`Registry::start_tls`]) HTTPS; without authentication, or ([`RegistryAuth`]) with htpasswd
//! Basic auth or bearer tokens from a token server (see `token_server`).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::http::{self, Response};
use super::{Skip, tempdir, which};

/// How long `start` waits for `GET /v2/` to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with a new port when the one picked was taken in the meantime.
const PORT_ATTEMPTS: usize = 3;
/// Where Debian installs the registry (used when it is not on `PATH`).
const DEBIAN_BIN: &str = "/usr/bin/docker-registry";

/// Media types a client accepts for manifests: OCI and Docker, single and multi-platform.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// How a test registry authenticates clients.
#[derive(Debug, Clone, Default)]
pub enum RegistryAuth {
    /// Anyone may pull and push.
    #[default]
    None,
    /// Basic authentication against an htpasswd file (bcrypt entries; see [`htpasswd_file`]).
    Htpasswd(PathBuf),
    /// Bearer tokens from the token server at `realm`, signed by a certificate in
    /// `root_cert_bundle`, issued by `issuer` for `service`.
    Token {
        realm: String,
        service: String,
        issuer: String,
        root_cert_bundle: PathBuf,
    },
}

/// An htpasswd file in `dir` with bcrypt entries for `users` (`htpasswd -B` from
/// apache2-utils); a [`Skip`] when htpasswd is not installed.
pub fn htpasswd_file(dir: &Path, users: &[(&str, &str)]) -> Result<PathBuf, Skip> {
    let htpasswd = which("htpasswd")?;
    let mut text = String::new();
    for (user, password) in users {
        let out = Command::new(&htpasswd)
            .args(["-nbB", user, password])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", htpasswd.display()));
        assert!(
            out.status.success(),
            "htpasswd -nbB {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.push_str(String::from_utf8_lossy(&out.stdout).trim());
        text.push('\n');
    }
    let path = dir.join("htpasswd");
    fs_err::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    Ok(path)
}

/// A running registry. Dropping it kills exactly the process it started (through its `Child`
/// handle) and removes its storage.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    /// Holds config.yml, registry.log and data/. Dropped after the process is reaped.
    dir: tempfile::TempDir,
}

enum NotReady {
    Exited(ExitStatus),
    TimedOut,
}

impl Registry {
    /// Starts a registry and waits (up to 10 s) until `GET /v2/` answers.
    ///
    /// Returns a [`Skip`] ("docker-registry not installed") when the binary is missing; panics,
    /// with the registry's log, when it is installed but does not come up.
    pub fn start() -> Result<Registry, Skip> {
        Self::start_with(&RegistryAuth::None)
    }

    /// [`Registry::start`] with authentication.
    pub fn start_with(auth: &RegistryAuth) -> Result<Registry, Skip> {
        Self::start_inner(auth, None)
    }

    /// [`Registry::start`] serving HTTPS only, with the PEM certificate chain and key given.
    pub fn start_tls(certificate: &Path, key: &Path) -> Result<Registry, Skip> {
        Self::start_inner(
            &RegistryAuth::None,
            Some((certificate.to_path_buf(), key.to_path_buf())),
        )
    }

    fn start_inner(auth: &RegistryAuth, tls: Option<(PathBuf, PathBuf)>) -> Result<Registry, Skip> {
        let bin = which("docker-registry").or_else(|skip| {
            let debian = Path::new(DEBIAN_BIN);
            if debian.is_file() {
                Ok(debian.to_path_buf())
            } else {
                Err(skip)
            }
        })?;

        let dir = tempdir();
        let data = dir.path().join("data");
        let config = dir.path().join("config.yml");
        let log = dir.path().join("registry.log");
        let mut failures = String::new();

        for attempt in 1..=PORT_ATTEMPTS {
            let addr = free_port();
            // Every response carries this header, so we recognise our own registry (and not
            // another one that grabbed the port first).
            let token = format!("{}-{attempt}", dir.path().display());
            fs_err::write(
                &config,
                config_yaml(addr, &data, &token, auth, tls.as_ref()),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let log_file = std::fs::File::create(&log)
                .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
            let log_err = log_file
                .try_clone()
                .unwrap_or_else(|e| panic!("cloning {}: {e}", log.display()));

            let mut cmd = Command::new(&bin);
            cmd.arg("serve")
                .arg(&config)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::from(log_file))
                .stderr(Stdio::from(log_err));
            // REGISTRY_* variables override config.yml; do not let the caller's leak in.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(key);
                }
            }
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));

            let needs_auth = !matches!(auth, RegistryAuth::None);
            match wait_ready(&mut child, addr, &token, needs_auth, tls.is_some()) {
                Ok(()) => return Ok(Registry { child, addr, dir }),
                Err(not_ready) => {
                    let why = match not_ready {
                        NotReady::Exited(status) => format!("exited with {status}"),
                        NotReady::TimedOut => {
                            let _ = child.kill();
                            let _ = child.wait();
                            format!("did not answer GET /v2/ within {READY_TIMEOUT:?}")
                        }
                    };
                    let log_text = fs_err::read_to_string(&log).unwrap_or_default();
                    let _ = writeln!(
                        failures,
                        "attempt {attempt} on {addr}: {why}\n{}",
                        log_text.trim_end()
                    );
                    // Someone else took the port between our probe and the registry's bind.
                    if log_text.contains("address already in use") {
                        continue;
                    }
                    break;
                }
            }
        }
        panic!(
            "{} serve {} did not start:\n{failures}",
            bin.display(),
            config.display()
        );
    }

    /// `127.0.0.1:PORT`, as used in image references (`127.0.0.1:PORT/repo:tag`).
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Process id of the registry.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Root of the registry's filesystem storage.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The registry's log so far (stdout and stderr; level warn), for failure messages.
    pub fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Sends a request to the registry; `path` starts with `/v2/`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        http::request(self.addr, method, path, headers, body)
    }

    /// `GET path`; panics on a transport error (not on an HTTP error status).
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], &[]).unwrap_or_else(|e| {
            panic!(
                "GET {}{path}: {e}\nregistry log:\n{}",
                self.url(),
                self.log()
            )
        })
    }

    /// Repositories in the registry (`GET /v2/_catalog`), sorted.
    pub fn catalog(&self) -> Vec<String> {
        let resp = self.get("/v2/_catalog");
        assert_eq!(resp.status, 200, "GET /v2/_catalog: {}", resp.text());
        string_list(&resp.json()["repositories"])
    }

    /// Tags of `repo` (`GET /v2/REPO/tags/list`), sorted; empty when the repository is unknown.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let resp = self.get(&format!("/v2/{repo}/tags/list"));
        match resp.status {
            200 => string_list(&resp.json()["tags"]),
            404 => Vec::new(),
            status => panic!("GET /v2/{repo}/tags/list: {status} {}", resp.text()),
        }
    }

    /// `GET /v2/REPO/manifests/REFERENCE` accepting OCI and Docker manifests and indexes. The
    /// digest is in `resp.header("docker-content-digest")`, the media type in `content-type`.
    pub fn manifest(&self, repo: &str, reference: &str) -> Response {
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.request("GET", &path, &[("Accept", MANIFEST_ACCEPT)], &[])
            .unwrap_or_else(|e| panic!("GET {}{path}: {e}", self.url()))
    }

    /// Whether blob `digest` exists in `repo` (`HEAD /v2/REPO/blobs/DIGEST`).
    pub fn has_blob(&self, repo: &str, digest: &str) -> bool {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let resp = self
            .request("HEAD", &path, &[], &[])
            .unwrap_or_else(|e| panic!("HEAD {}{path}: {e}", self.url()));
        match resp.status {
            200 => true,
            404 => false,
            status => panic!("HEAD {path}: unexpected status {status}"),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Exactly our child: no process-name matching. Reap it before the temp dir goes away.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
}

/// Response header identifying one registry instance.
const ID_HEADER: &str = "X-Kiln-Test-Registry";

fn config_yaml(
    addr: SocketAddr,
    data: &Path,
    token: &str,
    auth: &RegistryAuth,
    tls: Option<&(PathBuf, PathBuf)>,
) -> String {
    // JSON strings are valid YAML scalars: this quotes paths safely.
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let data = quote(&data.to_string_lossy());
    let token = quote(token);
    let auth = match auth {
        RegistryAuth::None => String::new(),
        RegistryAuth::Htpasswd(path) => format!(
            "auth:\n  htpasswd:\n    realm: kiln-test-registry\n    path: {}\n",
            quote(&path.to_string_lossy())
        ),
        RegistryAuth::Token {
            realm,
            service,
            issuer,
            root_cert_bundle,
        } => format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            quote(realm),
            quote(service),
            quote(issuer),
            quote(&root_cert_bundle.to_string_lossy())
        ),
    };
    let tls = tls.map_or(String::new(), |(certificate, key)| {
        format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            quote(&certificate.to_string_lossy()),
            quote(&key.to_string_lossy())
        )
    });
    format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: kiln-test-registry
  headers:
    X-Content-Type-Options: [nosniff]
    {ID_HEADER}: [{token}]
{tls}{auth}"
    )
}

/// Waits until `GET /v2/` answers with our header: 200, or 401 when authentication is on.
fn wait_ready(
    child: &mut Child,
    addr: SocketAddr,
    token: &str,
    needs_auth: bool,
    tls: bool,
) -> Result<(), NotReady> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        // An HTTPS-only registry answers plain HTTP with Go's 400 "Client sent an HTTP request
        // to an HTTPS server" (without our header: the port was free a moment before).
        let ready = |r: &Response| {
            if tls {
                r.status == 400 && r.text().contains("HTTPS server")
            } else {
                let expected = if needs_auth { 401 } else { 200 };
                r.status == expected && r.header(ID_HEADER) == Some(token)
            }
        };
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            && http::request(addr, "GET", "/v2/", &[], &[]).is_ok_and(|r| ready(&r))
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn string_list(value: &serde_json::Value) -> Vec<String> {
    let mut list: Vec<String> = value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    list.sort();
    list
}
