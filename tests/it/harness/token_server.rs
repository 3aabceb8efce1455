//! A token server for a [`Registry`](super::Registry) configured with `auth: token`
//! (distribution's "Token Authentication Specification"), on 127.0.0.1 over plain HTTP.
//!
//! - `GET /token?service=&scope=...&account=` with `Authorization: Basic` (or anonymous);
//!   `offline_token=true` adds a refresh token to the answer when [`TokenServer::set_refresh`]
//!   is on.
//! - `POST /token` with the OAuth2 form `grant_type=refresh_token` (or `password`).
//!
//! Authenticated users get every action they ask for; anonymous requests get a token with no
//! access. Tokens are JWTs signed RS256 with a key and self-signed certificate made by
//! `openssl` (the certificate is the registry's `rootcertbundle` and travels in the JWT's `x5c`
//! header); signing also runs `openssl dgst`. Every token request is recorded
//! ([`TokenServer::requests`]) so tests can check the scopes kiln asked for.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::registry::RegistryAuth;
use super::{Skip, run_ok, tempdir, which};

/// The `service` the registry is configured with (the JWT audience).
pub const SERVICE: &str = "kiln-test-registry";
/// The JWT issuer the registry trusts.
pub const ISSUER: &str = "kiln-test-token-server";
/// Lifetime of issued tokens.
const EXPIRES_IN: u64 = 300;

/// A token request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestSeen {
    /// `GET` or `POST`.
    pub method: String,
    /// `anonymous`, `basic` (GET with a password), `refresh_token` or `password` (POST).
    pub grant: String,
    /// The authenticated user, if the credentials were valid.
    pub user: Option<String>,
    /// The `account` query parameter (GET).
    pub account: Option<String>,
    /// Every scope asked for, in order.
    pub scopes: Vec<String>,
    /// `offline_token=true` (GET) or `access_type=offline` (POST).
    pub offline: bool,
    /// The HTTP status answered.
    pub status: u16,
}

struct State {
    users: Vec<(String, String)>,
    key: PathBuf,
    cert_der: Vec<u8>,
    openssl: PathBuf,
    refresh: AtomicBool,
    /// Refresh token → user.
    refresh_tokens: Mutex<HashMap<String, String>>,
    counter: AtomicU64,
    log: Mutex<Vec<TokenRequestSeen>>,
}

/// A running token server; stops (and joins its thread) on drop.
pub struct TokenServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl TokenServer {
    /// Start a token server that knows `users` (name, password). A [`Skip`] when openssl is
    /// not installed.
    pub fn start(users: &[(&str, &str)]) -> Result<Self, Skip> {
        let openssl = which("openssl")?;
        let dir = tempdir();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let der = dir.path().join("cert.der");
        run_ok(
            Command::new(&openssl)
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=kiln-test-token-server", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .stderr(Stdio::null()),
        );
        run_ok(
            Command::new(&openssl)
                .args(["x509", "-outform", "DER", "-in"])
                .arg(&cert)
                .arg("-out")
                .arg(&der),
        );
        let cert_der = fs_err::read(&der).unwrap_or_else(|e| panic!("{e}"));

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let state = Arc::new(State {
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
                .collect(),
            key,
            cert_der,
            openssl,
            refresh: AtomicBool::new(false),
            refresh_tokens: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || serve(stream, &state));
                }
            })
        };
        Ok(Self {
            addr,
            state,
            stop,
            thread: Some(thread),
            dir,
        })
    }

    /// The realm URL (`http://127.0.0.1:PORT/token`).
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The registry configuration that trusts this server.
    pub fn registry_auth(&self) -> RegistryAuth {
        RegistryAuth::Token {
            realm: self.realm(),
            service: SERVICE.to_owned(),
            issuer: ISSUER.to_owned(),
            root_cert_bundle: self.dir.path().join("cert.pem"),
        }
    }

    /// Whether `offline_token=true` requests get a refresh token (default: off).
    pub fn set_refresh(&self, on: bool) {
        self.state.refresh.store(on, Ordering::SeqCst);
    }

    /// Every token request so far, in arrival order.
    pub fn requests(&self) -> Vec<TokenRequestSeen> {
        self.state.log.lock().unwrap().clone()
    }

    /// Forget the requests seen so far.
    pub fn clear_requests(&self) {
        self.state.log.lock().unwrap().clear();
    }

    /// A token for `user` (who must be known) with `scopes`, for checking the registry
    /// directly; `Authorization: Bearer <token>`.
    pub fn token_for(&self, user: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        jwt(&self.state, Some(user), &scopes)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Request {
    method: String,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    form: Vec<(String, String)>,
}

fn all<'a>(pairs: &'a [(String, String)], name: &str) -> impl Iterator<Item = &'a str> {
    pairs
        .iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    all(pairs, name).next()
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut authorization = None;
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(v.trim().to_owned()),
                "content-length" => length = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let parse = |s: &[u8]| -> Vec<(String, String)> {
        url::form_urlencoded::parse(s).into_owned().collect()
    };
    let query = target
        .split_once('?')
        .map(|(_, q)| parse(q.as_bytes()))
        .unwrap_or_default();
    Some(Request {
        method,
        query,
        authorization,
        form: parse(&body),
    })
}

fn serve(mut stream: TcpStream, state: &State) {
    let Some(req) = read_request(&stream) else {
        return;
    };
    let (status, body, seen) = answer(state, &req);
    state
        .log
        .lock()
        .unwrap()
        .push(TokenRequestSeen { status, ..seen });
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// Check a user's password.
fn valid(state: &State, user: &str, password: &str) -> bool {
    state.users.iter().any(|(u, p)| u == user && p == password)
}

fn answer(state: &State, req: &Request) -> (u16, String, TokenRequestSeen) {
    let unauthorized =
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#;
    let mut seen = TokenRequestSeen {
        method: req.method.clone(),
        grant: String::new(),
        user: None,
        account: first(&req.query, "account").map(str::to_owned),
        scopes: Vec::new(),
        offline: false,
        status: 0,
    };
    let user = match req.method.as_str() {
        "GET" => {
            seen.scopes = all(&req.query, "scope").map(str::to_owned).collect();
            seen.offline = first(&req.query, "offline_token") == Some("true");
            match &req.authorization {
                None => {
                    seen.grant = "anonymous".to_owned();
                    None
                }
                Some(header) => {
                    seen.grant = "basic".to_owned();
                    let decoded = header
                        .strip_prefix("Basic ")
                        .and_then(|b| STANDARD.decode(b).ok())
                        .and_then(|b| String::from_utf8(b).ok());
                    match decoded.as_deref().and_then(|d| d.split_once(':')) {
                        Some((u, p)) if valid(state, u, p) => Some(u.to_owned()),
                        _ => return (401, unauthorized.to_owned(), seen),
                    }
                }
            }
        }
        "POST" => {
            seen.grant = first(&req.form, "grant_type")
                .unwrap_or_default()
                .to_owned();
            seen.scopes = first(&req.form, "scope")
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            seen.offline = first(&req.form, "access_type") == Some("offline");
            let invalid =
                r#"{"error":"invalid_grant","error_description":"unknown refresh token"}"#;
            let user = match seen.grant.as_str() {
                "refresh_token" => first(&req.form, "refresh_token")
                    .and_then(|t| state.refresh_tokens.lock().unwrap().get(t).cloned()),
                "password" => match (first(&req.form, "username"), first(&req.form, "password")) {
                    (Some(u), Some(p)) if valid(state, u, p) => Some(u.to_owned()),
                    _ => None,
                },
                _ => None,
            };
            match user {
                Some(u) => Some(u),
                None => return (401, invalid.to_owned(), seen),
            }
        }
        _ => return (405, "{}".to_owned(), seen),
    };
    seen.user.clone_from(&user);
    // Anonymous tokens carry no access.
    let granted = if user.is_some() {
        seen.scopes.clone()
    } else {
        Vec::new()
    };
    let token = jwt(state, user.as_deref(), &granted);
    let mut response = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": EXPIRES_IN,
    });
    if let Some(user) = &user
        && (seen.offline || seen.grant == "refresh_token")
        && state.refresh.load(Ordering::SeqCst)
    {
        let n = state.counter.fetch_add(1, Ordering::SeqCst);
        let refresh = format!("refresh-{user}-{n}");
        state
            .refresh_tokens
            .lock()
            .unwrap()
            .insert(refresh.clone(), user.clone());
        response["refresh_token"] = refresh.into();
    }
    (200, response.to_string(), seen)
}

/// A signed JWT granting `scopes` (`repository:<name>:<actions>`) to `user`.
fn jwt(state: &State, user: Option<&str>, scopes: &[String]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name) = (parts.next()?, parts.next()?);
            let actions = parts.next().unwrap_or_default();
            Some(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": actions.split(',').filter(|a| !a.is_empty()).collect::<Vec<_>>(),
            }))
        })
        .collect();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "RS256",
        "x5c": [STANDARD.encode(&state.cert_der)],
    });
    let n = state.counter.fetch_add(1, Ordering::SeqCst);
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.unwrap_or_default(),
        "aud": SERVICE,
        "exp": now + EXPIRES_IN,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": format!("kiln-test-{n}"),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(&state.openssl, &state.key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// RS256: `openssl dgst -sha256 -sign KEY` over `data`.
fn sign(openssl: &Path, key: &Path, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(openssl)
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running openssl dgst: {e}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(data)
        .unwrap_or_else(|e| panic!("writing to openssl dgst: {e}"));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("openssl dgst: {e}"));
    assert!(
        out.status.success(),
        "openssl dgst -sign failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
