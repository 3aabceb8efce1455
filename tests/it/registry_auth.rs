//! Registry authentication end to end: `kiln login`, `push`, `pull` and `logout` against
//! Debian's `docker-registry` with htpasswd Basic auth, with bearer tokens from the harness's
//! token server (checking the scopes kiln asks for), and with a credential helper.
//! `cargo test --test it registry_auth`. All traffic goes to 127.0.0.1.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::harness::{
    self, MANIFEST_ACCEPT, Registry, RegistryAuth, TokenServer, run_ok, skip_unless,
};

/// One user's setup: a store, a Docker config directory and a directory for helpers.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Self {
            dir: harness::tempdir(),
        };
        fs_err::create_dir_all(env.bin()).unwrap();
        env
    }

    fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    fn config_file(&self) -> PathBuf {
        self.docker_config().join("config.json")
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn store(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `kiln` on store `store`, with this environment's Docker config and a `PATH` of the
    /// helper directory and the system's.
    fn kiln(&self, store: &str, args: &[&str]) -> Command {
        let mut cmd = harness::kiln_cmd(&self.store(store));
        let path = std::env::join_paths([
            self.bin(),
            PathBuf::from("/usr/local/bin"),
            PathBuf::from("/usr/bin"),
            PathBuf::from("/bin"),
        ])
        .unwrap();
        cmd.args(args)
            .env("DOCKER_CONFIG", self.docker_config())
            .env_remove("REGISTRY_AUTH_FILE")
            .env("PATH", path)
            .stdin(Stdio::null());
        cmd
    }

    /// `kiln login -u USER --password-stdin HOST` with `password` on stdin.
    fn login(&self, user: &str, password: &str, host: &str) -> Output {
        let mut cmd = self.kiln("store", &["login", "-u", user, "--password-stdin", host]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            writeln!(stdin, "{password}").unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn config(&self) -> serde_json::Value {
        serde_json::from_str(&fs_err::read_to_string(self.config_file()).unwrap()).unwrap()
    }

    /// Put busybox into store `store` under `<source>/library/busybox:latest` (pulled from an
    /// unauthenticated registry, which the caller keeps alive) and return that name.
    fn seed(&self, source: &Registry) -> Result<String, harness::Skip> {
        harness::skopeo_push_busybox(source, "library/busybox:latest")?;
        let name = format!("{}/library/busybox:latest", source.host_port());
        run_ok(&mut self.kiln("store", &["pull", "-q", &name]));
        Ok(name)
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// Checks that a failed command exited 1 and its stderr contains every `needle`.
fn assert_fails(out: &Output, needles: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    for needle in needles {
        assert!(
            stderr(out).contains(needle),
            "stderr lacks {needle:?}:\n{}",
            stderr(out)
        );
    }
}

fn mode(path: &Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn htpasswd_basic_auth_login_push_pull_logout() {
    let env = Env::new();
    let htpasswd = skip_unless!(harness::htpasswd_file(
        env.dir.path(),
        &[("alice", "wonderland")]
    ));
    let reg = skip_unless!(Registry::start_with(&RegistryAuth::Htpasswd(htpasswd)));
    let source = skip_unless!(Registry::start());
    let image = skip_unless!(env.seed(&source));
    let host = reg.host_port();
    let target = format!("{host}/team/app:v1");

    // Without credentials the registry refuses, and kiln says how to fix it.
    let out = env
        .kiln("store", &["push", &image, &target])
        .output()
        .unwrap();
    assert_fails(&out, &[&host, "kiln login"]);

    // A wrong password is refused with the registry named, and nothing is written.
    let out = env.login("alice", "not-the-password", &host);
    assert_fails(&out, &[&format!("registry {host} rejected"), "user alice"]);
    assert!(
        !stderr(&out).contains("not-the-password"),
        "{}",
        stderr(&out)
    );
    assert!(!env.config_file().exists());

    let out = env.login("alice", "wonderland", &host);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Login Succeeded\n");
    assert!(
        stderr(&out).contains("stored unencrypted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        env.config()["auths"][&host]["auth"],
        STANDARD.encode("alice:wonderland")
    );
    assert_eq!(mode(&env.config_file()), 0o600);

    // Docker's shortcut: without flags, the stored credentials are checked again.
    let out = env.kiln("store", &["login", &host]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Login Succeeded\n");
    assert!(
        stderr(&out).contains("Authenticating with existing credentials..."),
        "{}",
        stderr(&out)
    );
    // A user name without a password cannot be completed without a terminal.
    let out = env
        .kiln("store", &["login", "-u", "alice", &host])
        .output()
        .unwrap();
    assert_fails(
        &out,
        &["Cannot perform an interactive login from a non TTY device"],
    );

    let out = run_ok(&mut env.kiln("store", &["push", &image, &target]));
    assert!(out.starts_with("v1: digest: sha256:"), "{out}");
    let served = reg
        .request(
            "GET",
            "/v2/team/app/manifests/v1",
            &[
                ("Accept", MANIFEST_ACCEPT),
                ("Authorization", &basic("alice", "wonderland")),
            ],
            &[],
        )
        .unwrap();
    assert_eq!(served.status, 200, "{}", served.text());

    let pulled = run_ok(&mut env.kiln("fresh", &["pull", "-q", &target]));
    assert_eq!(pulled.trim(), target);
    let listed = run_ok(&mut env.kiln("fresh", &["images"]));
    assert!(listed.contains(&format!("{host}/team/app")), "{listed}");

    let out = run_ok(&mut env.kiln("store", &["logout", &host]));
    assert_eq!(out, format!("Removing login credentials for {host}\n"));
    assert!(
        env.config()["auths"].get(&host).is_none(),
        "{}",
        env.config()
    );
    let out = run_ok(&mut env.kiln("store", &["logout", &format!("http://{host}/v2/")]));
    assert_eq!(out, format!("Not logged in to {host}\n"));

    let out = env
        .kiln("fresh2", &["pull", "-q", &target])
        .output()
        .unwrap();
    assert_fails(&out, &[&host]);
}

#[test]
fn token_server_login_push_pull_with_scopes() {
    let ts = skip_unless!(TokenServer::start(&[("bob", "builder")]));
    let reg = skip_unless!(Registry::start_with(&ts.registry_auth()));
    let source = skip_unless!(Registry::start());
    let env = Env::new();
    let image = skip_unless!(env.seed(&source));
    let host = reg.host_port();
    let target = format!("{host}/team/app:v1");

    // Anonymous: the token server issues a token without access; the registry refuses it.
    let out = env
        .kiln("store", &["push", &image, &target])
        .output()
        .unwrap();
    assert_fails(&out, &[&host]);
    let seen = ts.requests();
    assert!(
        seen.iter()
            .any(|r| r.grant == "anonymous" && r.scopes == ["repository:team/app:pull,push"]),
        "{seen:#?}"
    );

    // Wrong password: the token server refuses; kiln names the registry, writes nothing.
    let out = env.login("bob", "wrong", &host);
    assert_fails(&out, &[&format!("registry {host} rejected"), "user bob"]);
    assert!(!env.config_file().exists());

    // Login without refresh tokens: the password is stored.
    ts.clear_requests();
    let out = env.login("bob", "builder", &host);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Login Succeeded\n");
    let seen = ts.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].grant.as_str()),
        ("GET", "basic")
    );
    assert_eq!(seen[0].account.as_deref(), Some("bob"));
    assert!(seen[0].offline && seen[0].scopes.is_empty(), "{seen:#?}");
    assert_eq!(
        env.config()["auths"][&host]["auth"],
        STANDARD.encode("bob:builder")
    );

    // Push: one token, for pull and push on the repository, got with the password.
    ts.clear_requests();
    let out = run_ok(&mut env.kiln("store", &["push", &image, &target]));
    assert!(out.starts_with("v1: digest: sha256:"), "{out}");
    let seen = ts.requests();
    assert_eq!(
        seen.len(),
        1,
        "one cached token serves the whole push: {seen:#?}"
    );
    assert_eq!(seen[0].grant, "basic");
    assert_eq!(seen[0].user.as_deref(), Some("bob"));
    assert_eq!(seen[0].scopes, ["repository:team/app:pull,push"]);
    let token = ts.token_for("bob", &["repository:team/app:pull"]);
    let served = reg
        .request(
            "GET",
            "/v2/team/app/manifests/v1",
            &[
                ("Accept", MANIFEST_ACCEPT),
                ("Authorization", &format!("Bearer {token}")),
            ],
            &[],
        )
        .unwrap();
    assert_eq!(served.status, 200, "{}", served.text());

    // Login again with refresh tokens on: Docker stores the identity token, not the password.
    ts.set_refresh(true);
    let out = env.login("bob", "builder", &host);
    assert!(out.status.success(), "{}", stderr(&out));
    let entry = &env.config()["auths"][&host];
    let identity = entry["identitytoken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(identity.starts_with("refresh-bob-"), "{entry}");
    assert_eq!(entry["auth"], STANDARD.encode("bob:"));

    // Pull into a fresh store: an OAuth2 refresh-token grant for pull only.
    ts.clear_requests();
    run_ok(&mut env.kiln("fresh", &["pull", "-q", &target]));
    let seen = ts.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].grant.as_str()),
        ("POST", "refresh_token")
    );
    assert_eq!(seen[0].user.as_deref(), Some("bob"));
    assert_eq!(seen[0].scopes, ["repository:team/app:pull"]);
    assert_eq!(seen[0].status, 200);

    // Pushed to another repository of the registry from the store that pulled it: the blobs
    // are mounted from team/app, so the token also covers pulling from there.
    ts.clear_requests();
    let other = format!("{host}/team/other:v1");
    run_ok(&mut env.kiln("fresh", &["push", &target, &other]));
    let seen = ts.requests();
    assert!(
        seen.iter().any(|r| r.status == 200
            && r.scopes
                == [
                    "repository:team/other:pull,push",
                    "repository:team/app:pull"
                ]),
        "{seen:#?}"
    );

    let out = run_ok(&mut env.kiln("store", &["logout", &host]));
    assert_eq!(out, format!("Removing login credentials for {host}\n"));
    let out = env
        .kiln("fresh2", &["pull", "-q", &target])
        .output()
        .unwrap();
    assert_fails(&out, &[&host]);
}

/// A credential helper keeping one file per server in `<its dir>/store/`, logging its calls
/// (the one the unit tests of `registry::credentials` use too).
const HELPER: &str = include_str!("../../testdata/docker-credential-fake.sh");

#[test]
fn credential_helper_holds_the_password() {
    let env = Env::new();
    let htpasswd = skip_unless!(harness::htpasswd_file(
        env.dir.path(),
        &[("carol", "s3cret")]
    ));
    let reg = skip_unless!(Registry::start_with(&RegistryAuth::Htpasswd(htpasswd)));
    let source = skip_unless!(Registry::start());
    let image = skip_unless!(env.seed(&source));
    let host = reg.host_port();
    let target = format!("{host}/helped:v1");

    let helper = env.bin().join("docker-credential-kilntest");
    fs_err::write(&helper, HELPER).unwrap();
    fs_err::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    fs_err::create_dir_all(env.docker_config()).unwrap();
    fs_err::write(
        env.config_file(),
        r#"{"credsStore": "kilntest", "currentContext": "default"}"#,
    )
    .unwrap();
    let stored = env
        .bin()
        .join("store")
        .join(host.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "_"));

    let out = env.login("carol", "s3cret", &host);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Login Succeeded\n");
    assert!(!stderr(&out).contains("unencrypted"), "{}", stderr(&out));
    // The file keeps an empty entry and its other settings; the helper has the secret.
    let config = env.config();
    assert_eq!(config["auths"][&host], serde_json::json!({}));
    assert_eq!(config["currentContext"], "default");
    assert_eq!(config["credsStore"], "kilntest");
    let held = fs_err::read_to_string(&stored).unwrap();
    assert!(
        held.contains(r#""Username":"carol""#) && held.contains(r#""Secret":"s3cret""#),
        "{held}"
    );

    let out = run_ok(&mut env.kiln("store", &["push", &image, &target]));
    assert!(out.starts_with("v1: digest: sha256:"), "{out}");
    run_ok(&mut env.kiln("fresh", &["pull", "-q", &target]));

    let out = run_ok(&mut env.kiln("store", &["logout", &host]));
    assert_eq!(out, format!("Removing login credentials for {host}\n"));
    assert!(!stored.exists());
    let calls = fs_err::read_to_string(env.bin().join("calls")).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.first(), Some(&"store"), "{calls:?}");
    assert_eq!(calls.last(), Some(&"erase"), "{calls:?}");
    assert!(
        calls.iter().filter(|c| **c == "get").count() >= 2,
        "{calls:?}"
    );

    // The unauthenticated source registry never needed the helper: the seed pull above ran
    // before the helper was configured, and the pulls here asked only for `host`.
    let out = env
        .kiln("fresh2", &["pull", "-q", &target])
        .output()
        .unwrap();
    assert_fails(&out, &[&host]);
}
