//! A fault-injecting HTTP relay on 127.0.0.1 for transfer tests: it forwards each request to an
//! upstream server (e.g. a [`super::Registry`]) and, when a [`Rule`] matches the request (method
//! and a substring of the path), injects its [`Fault`] instead: an error status (500, 429 with
//! `Retry-After`) answered by the proxy itself, a connection cut after N bytes of the response
//! or of the request body, a flipped response byte, or a `Range` header removed (a server that
//! ignores ranges). Each rule fires a given number of times. Requests carry `Connection: close`
//! upstream, so every connection holds one exchange and the relay need not parse responses.
//! Every request is logged (method, path and query, `Range`, fault applied) for assertions.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a matching rule does to the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and an error body) without contacting the upstream.
    Status { code: u16, retry_after: Option<u64> },
    /// Relay, but close both connections after this many bytes of the response (head included).
    CutResponseAfter(u64),
    /// Relay, but close both connections after this many bytes of the request body.
    CutRequestAfter(u64),
    /// Relay, flipping the response byte at this offset (head included).
    CorruptResponseAt(u64),
    /// Relay without the request's `Range` header.
    DropRange,
}

/// When to inject a fault.
#[derive(Debug, Clone)]
pub struct Rule {
    method: String,
    path_contains: String,
    fault: Fault,
    remaining: usize,
}

impl Rule {
    /// Inject `fault` once into the next `method` request whose path contains `path_contains`.
    pub fn new(method: &str, path_contains: &str, fault: Fault) -> Self {
        Self {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            fault,
            remaining: 1,
        }
    }

    /// Fire `n` times instead of once.
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = n;
        self
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub range: Option<String>,
    pub fault: Option<Fault>,
}

/// A running proxy; stops its accept loop on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    rules: Arc<Mutex<Vec<Rule>>>,
    log: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Relay to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"));
        let addr = listener.local_addr().expect("local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let rules = Arc::new(Mutex::new(Vec::<Rule>::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, rules, log) = (Arc::clone(&stop), Arc::clone(&rules), Arc::clone(&log));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = stream else { continue };
                    let (rules, log) = (Arc::clone(&rules), Arc::clone(&log));
                    std::thread::spawn(move || relay(client, upstream, &rules, &log));
                }
            })
        };
        Self {
            addr,
            stop,
            rules,
            log,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Add a rule (rules are tried in the order added).
    pub fn add(&self, rule: Rule) {
        self.rules.lock().unwrap().push(rule);
    }

    /// Rules that have not fired as often as they were told to.
    pub fn pending(&self) -> Vec<Rule> {
        self.rules
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.remaining > 0)
            .cloned()
            .collect()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// Forget the log.
    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    rules: &Mutex<Vec<Rule>>,
    log: &Mutex<Vec<Seen>>,
) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut client_w) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(client);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end().to_owned();
        if h.is_empty() {
            break;
        }
        headers.push(h);
    }
    let header = |name: &str| {
        headers.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let body_len: u64 = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let range = header("range");
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let fault = {
        let mut rules = rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| r.remaining > 0 && r.method == method && path.contains(&r.path_contains))
            .map(|r| {
                r.remaining -= 1;
                r.fault.clone()
            })
    };
    log.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        range,
        fault: fault.clone(),
    });

    if let Some(Fault::Status { code, retry_after }) = &fault {
        // Read the body so the client sees the answer rather than a failed write.
        let _ = std::io::copy(&mut (&mut reader).take(body_len), &mut std::io::sink());
        let body =
            format!(r#"{{"errors":[{{"code":"UNKNOWN","message":"injected fault {code}"}}]}}"#);
        let mut head = format!(
            "HTTP/1.1 {code} Injected\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(secs) = retry_after {
            head.push_str(&format!("retry-after: {secs}\r\n"));
        }
        head.push_str("\r\n");
        let _ = client_w.write_all(head.as_bytes());
        let _ = client_w.write_all(body.as_bytes());
        let _ = client_w.flush();
        let _ = client_w.shutdown(Shutdown::Both);
        return;
    }

    let Ok(mut up) = TcpStream::connect(upstream) else {
        let _ = client_w.shutdown(Shutdown::Both);
        return;
    };
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    for h in &headers {
        let name = h.split(':').next().unwrap_or_default().trim();
        let drop = name.eq_ignore_ascii_case("connection")
            || name.eq_ignore_ascii_case("keep-alive")
            || (fault == Some(Fault::DropRange) && name.eq_ignore_ascii_case("range"));
        if !drop {
            head.push_str(h);
            head.push_str("\r\n");
        }
    }
    head.push_str("connection: close\r\n\r\n");
    if up.write_all(head.as_bytes()).is_err() {
        let _ = client_w.shutdown(Shutdown::Both);
        return;
    }
    let Ok(up_r) = up.try_clone() else { return };
    let Ok(client_s) = client_w.try_clone() else {
        return;
    };
    let request_limit = match fault {
        Some(Fault::CutRequestAfter(n)) => Some(n),
        _ => None,
    };
    // Request body: client → upstream (the bytes the reader buffered first).
    let upload = std::thread::spawn(move || {
        let mut sent = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let want = match request_limit {
                Some(limit) if sent >= limit => {
                    let _ = up.shutdown(Shutdown::Both);
                    let _ = client_s.shutdown(Shutdown::Both);
                    return;
                }
                Some(limit) => buf.len().min((limit - sent) as usize),
                None => buf.len(),
            };
            match reader.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if up.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    sent += n as u64;
                }
            }
        }
    });
    // Response: upstream → client.
    let (cut, corrupt) = match fault {
        Some(Fault::CutResponseAfter(n)) => (Some(n), None),
        Some(Fault::CorruptResponseAt(n)) => (None, Some(n)),
        _ => (None, None),
    };
    let mut up_r = up_r;
    let mut relayed = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let want = match cut {
            Some(limit) if relayed >= limit => break,
            Some(limit) => buf.len().min((limit - relayed) as usize),
            None => buf.len(),
        };
        let n = match up_r.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(at) = corrupt
            && at >= relayed
            && at < relayed + n as u64
        {
            buf[(at - relayed) as usize] ^= 0xff;
        }
        if client_w.write_all(&buf[..n]).is_err() {
            break;
        }
        relayed += n as u64;
    }
    let _ = client_w.flush();
    let _ = client_w.shutdown(Shutdown::Both);
    let _ = up_r.shutdown(Shutdown::Both);
    let _ = upload.join();
}
