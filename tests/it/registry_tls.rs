//! Registry transport end to end: HTTPS with a registry's own CA from a `certs.d` directory (an
//! openssl-made CA and a `docker-registry` serving TLS), and plain-HTTP registries reached
//! through a proxy named by `HTTP_PROXY` (a `CONNECT` proxy in this file, on 127.0.0.1, in front
//! of the registry), loopback registries directly; a registry `registries.conf` declares
//! insecure; and pull mirrors from `registries.conf`. `cargo test --test it registry_tls`. All traffic goes to 127.0.0.1: the proxied
//! registries' names (`*.invalid`) are only ever sent to the proxy, never resolved.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use crate::harness::{self, Registry, Skip, run_ok, skip_unless};

/// A kiln command on store `store` (below `home`), with `home` as `HOME` and
/// `XDG_CONFIG_HOME` under it, and no proxy variables but those given.
fn kiln(home: &Path, store: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = harness::kiln_cmd(&home.join(store));
    cmd.args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("DOCKER_CONFIG", home.join(".docker"))
        .stdin(Stdio::null());
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"] {
        cmd.env_remove(var).env_remove(var.to_ascii_lowercase());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with openssl in `dir`:
/// `(ca.crt, server.crt, server.key)`.
fn certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), Skip> {
    let openssl = harness::which("openssl")?;
    let run = |args: &[&str]| {
        run_ok(Command::new(&openssl).args(args).current_dir(dir));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=kiln test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs_err::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    Ok((
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    ))
}

/// A store under `home` holding `busybox:local` (pulled from a plain-HTTP registry started
/// and dropped here), or a skip.
fn seeded(home: &Path) -> Result<(), Skip> {
    let source = Registry::start()?;
    harness::skopeo_push_busybox(&source, "library/busybox:latest")?;
    let name = format!("{}/library/busybox:latest", source.host_port());
    let pulled = kiln(home, "store", &["pull", "-q", &name], &[]);
    assert!(pulled.status.success(), "{}", text(&pulled));
    let tagged = kiln(home, "store", &["tag", &name, "busybox:local"], &[]);
    assert!(tagged.status.success(), "{}", text(&tagged));
    Ok(())
}

#[test]
fn a_registrys_own_ca_in_certs_d_is_trusted_for_it() {
    skip_unless!(harness::root_required());
    let home = harness::tempdir();
    let (ca, cert, key) = skip_unless!(certificates(home.path()));
    skip_unless!(seeded(home.path()));
    let registry = skip_unless!(Registry::start_tls(&cert, &key));
    let target = format!("{}/team/app:1", registry.host_port());
    // Verified TLS asked for, and nothing trusts the registry's CA yet: refused, naming it.
    let push = |store| {
        kiln(
            home.path(),
            store,
            &["push", "--tls-verify=true", "busybox:local", &target],
            &[],
        )
    };
    let refused = push("store");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("tls") && said.contains(&registry.host_port()),
        "{}",
        text(&refused)
    );
    // The CA in ~/.config/kiln/certs.d/<host:port>/: push and pull with verification.
    let certs = home
        .path()
        .join(".config/kiln/certs.d")
        .join(registry.host_port());
    fs_err::create_dir_all(&certs).unwrap();
    fs_err::copy(&ca, certs.join("ca.crt")).unwrap();
    let pushed = push("store");
    assert!(pushed.status.success(), "{}", text(&pushed));
    let pulled = kiln(
        home.path(),
        "fresh",
        &["pull", "--tls-verify=true", &target],
        &[],
    );
    assert!(pulled.status.success(), "{}", text(&pulled));
    // A broken file there is an error that names it, not a silent fallback.
    fs_err::write(certs.join("extra.crt"), "not a certificate").unwrap();
    let broken = push("store");
    assert_eq!(broken.status.code(), Some(1), "{}", text(&broken));
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("extra.crt"),
        "{}",
        text(&broken)
    );
}

/// An HTTP proxy on 127.0.0.1 that tunnels every `CONNECT` to `target`, whatever host it names
/// (ureq tunnels plain-HTTP requests too), recording the `CONNECT` lines it was sent.
struct Relay {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || tunnel(client, target, &seen));
            }
        });
        Relay { addr, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// One proxied connection: the `CONNECT` request's head, `200`, then bytes both ways.
fn tunnel(mut client: TcpStream, target: SocketAddr, seen: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next().unwrap_or_default().to_owned();
    if !line.starts_with("CONNECT ") {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    seen.lock().unwrap().push(line);
    let Ok(server) = TcpStream::connect(target) else {
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_in, &mut s_out);
        let _ = s_out.shutdown(std::net::Shutdown::Write);
    });
    let (mut s_in, mut c_out) = (server, client);
    let _ = std::io::copy(&mut s_in, &mut c_out);
    let _ = c_out.shutdown(std::net::Shutdown::Write);
}

#[test]
fn http_proxy_carries_registry_traffic_except_to_loopback() {
    skip_unless!(harness::root_required());
    let home = harness::tempdir();
    skip_unless!(seeded(home.path()));
    let registry = skip_unless!(Registry::start());
    let relay = Relay::start(registry.addr());
    // A name nobody resolves: only the proxy can reach it.
    let host = format!("kiln-test-registry.invalid:{}", registry.addr().port());
    let target = format!("{host}/team/app:1");
    let proxy = format!("http://{}", relay.addr);
    let pushed = kiln(
        home.path(),
        "store",
        &["push", "--tls-verify=false", "busybox:local", &target],
        &[("HTTP_PROXY", &proxy)],
    );
    assert!(pushed.status.success(), "{}", text(&pushed));
    let via_proxy = relay.requests();
    assert!(
        via_proxy.contains(&format!("CONNECT {host} HTTP/1.1")),
        "{via_proxy:#?}"
    );
    assert_eq!(registry.tags("team/app"), ["1"]);
    let pulled = kiln(
        home.path(),
        "fresh",
        &["pull", "--tls-verify=false", &target],
        &[("http_proxy", &proxy)],
    );
    assert!(pulled.status.success(), "{}", text(&pulled));
    // A loopback registry is never proxied (Go's rule): reached directly, the proxy unused.
    // (NO_PROXY itself is covered by the unit tests of `registry::tls`: going direct to a name
    // here would send a DNS query off the machine.)
    let before = relay.requests().len();
    let direct = kiln(
        home.path(),
        "store",
        &[
            "push",
            "busybox:local",
            &format!("{}/team/direct:1", registry.host_port()),
        ],
        &[("HTTP_PROXY", &proxy), ("HTTPS_PROXY", &proxy)],
    );
    assert!(direct.status.success(), "{}", text(&direct));
    assert_eq!(
        relay.requests().len(),
        before,
        "a loopback registry went through the proxy"
    );
}

/// A registry that registries.conf declares `insecure` is used with unverified HTTPS, as
/// Podman does; undeclared, its self-signed certificate is refused. Reached by a name through
/// the `CONNECT` proxy, since loopback registries are insecure by default anyway.
#[test]
fn a_registry_declared_insecure_in_registries_conf_skips_verification() {
    skip_unless!(harness::root_required());
    let home = harness::tempdir();
    let (_ca, cert, key) = skip_unless!(certificates(home.path()));
    skip_unless!(seeded(home.path()));
    let registry = skip_unless!(Registry::start_tls(&cert, &key));
    let relay = Relay::start(registry.addr());
    let host = format!("kiln-insecure.invalid:{}", registry.addr().port());
    let target = format!("{host}/team/app:1");
    let proxy = format!("http://{}", relay.addr);
    let conf = home.path().join("registries.conf");
    fs_err::write(&conf, "unqualified-search-registries = []\n").unwrap();
    let push = || {
        kiln(
            home.path(),
            "store",
            &["push", "busybox:local", &target],
            &[
                ("HTTPS_PROXY", proxy.as_str()),
                ("CONTAINERS_REGISTRIES_CONF", conf.to_str().unwrap()),
            ],
        )
    };
    let refused = push();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("tls"),
        "{}",
        text(&refused)
    );
    fs_err::write(
        &conf,
        format!("[[registry]]\nlocation = \"{host}\"\ninsecure = true\n"),
    )
    .unwrap();
    let pushed = push();
    assert!(pushed.status.success(), "{}", text(&pushed));
    let pulled = kiln(
        home.path(),
        "fresh",
        &["pull", &target],
        &[
            ("HTTPS_PROXY", proxy.as_str()),
            ("CONTAINERS_REGISTRIES_CONF", conf.to_str().unwrap()),
        ],
    );
    assert!(pulled.status.success(), "{}", text(&pulled));
}

/// Pull mirrors from registries.conf: a pull tries the registry's mirror first and names the
/// image as asked; what the mirror lacks comes from the registry itself; pushes go to the
/// registry.
#[test]
fn pulls_try_the_mirrors_of_registries_conf_first() {
    skip_unless!(harness::root_required());
    let home = harness::tempdir();
    skip_unless!(seeded(home.path()));
    let primary = skip_unless!(Registry::start());
    let mirror = skip_unless!(Registry::start());
    let conf = home.path().join("registries.conf");
    fs_err::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{}\"\n[[registry.mirror]]\nlocation = \"{}/cache\"\n",
            primary.host_port(),
            mirror.host_port()
        ),
    )
    .unwrap();
    let with_conf = [("CONTAINERS_REGISTRIES_CONF", conf.to_str().unwrap())];
    let run = |store: &str, args: &[&str]| kiln(home.path(), store, args, &with_conf);
    // Only the mirror has team/app; only the registry has team/only (a push ignores mirrors).
    let on_mirror = format!("{}/cache/team/app:1", mirror.host_port());
    let pushed = run("store", &["push", "busybox:local", &on_mirror]);
    assert!(pushed.status.success(), "{}", text(&pushed));
    let only = format!("{}/team/only:1", primary.host_port());
    let pushed = run("store", &["push", "busybox:local", &only]);
    assert!(pushed.status.success(), "{}", text(&pushed));
    assert_eq!(mirror.tags("cache/team/only"), Vec::<String>::new());

    let asked = format!("{}/team/app:1", primary.host_port());
    let without = kiln(home.path(), "plain", &["pull", &asked], &[]);
    assert_eq!(without.status.code(), Some(1), "{}", text(&without));
    let pulled = run("fresh", &["pull", &asked]);
    assert!(pulled.status.success(), "{}", text(&pulled));
    let named = run("fresh", &["image", "inspect", &asked]);
    assert!(named.status.success(), "named as asked: {}", text(&named));
    let fallback = run("fresh", &["pull", &only]);
    assert!(fallback.status.success(), "{}", text(&fallback));
}
