//! Forwarding an SSH agent into a RUN step (`--mount=type=ssh`): a socket in a private
//! directory, with the mount's owner and mode, that relays each connection to the agent socket
//! the build was given (`--ssh`), as BuildKit's session proxy does. The agent's own socket is
//! never exposed, so its owner and permissions do not matter to the step's user.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A running relay; stops (and removes its socket) on drop.
#[derive(Debug)]
pub struct AgentRelay {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentRelay {
    /// Listen at `socket` (owned by `uid:gid`, permissions `mode`) and relay to `agent`.
    pub fn start(socket: &Path, agent: &Path, uid: u32, gid: u32, mode: u32) -> io::Result<Self> {
        let listener = UnixListener::bind(socket)?;
        std::os::unix::fs::chown(socket, Some(uid), Some(gid))?;
        fs_err::set_permissions(socket, std::fs::Permissions::from_mode(mode))?;
        let stop = Arc::new(AtomicBool::new(false));
        let agent = agent.to_owned();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ssh-agent-relay".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let agent = agent.clone();
                    // One relay per connection; it ends when either side closes.
                    let _ = std::thread::Builder::new()
                        .name("ssh-agent-conn".into())
                        .spawn(move || {
                            if let Ok(upstream) = UnixStream::connect(&agent) {
                                relay(client, upstream);
                            }
                        });
                }
            })?;
        Ok(Self {
            socket: socket.to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for AgentRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs_err::remove_file(&self.socket);
    }
}

/// Copy both directions until either side closes.
fn relay(client: UnixStream, upstream: UnixStream) {
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || pump(client2, upstream2));
    pump(upstream, client);
    let _ = up.join();
}

fn pump(mut from: UnixStream, mut to: UnixStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn relays_both_ways_with_its_own_mode() {
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent");
        let agent = UnixListener::bind(&agent_path).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = agent.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf.iter().rev().copied().collect::<Vec<_>>())
                .unwrap();
        });
        let sock = dir.path().join("relay");
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let relay = AgentRelay::start(&sock, &agent_path, uid, gid, 0o600).unwrap();
        assert_eq!(fs_err::metadata(&sock).unwrap().mode() & 0o777, 0o600);
        let mut c = UnixStream::connect(relay.socket()).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"olleh");
        echo.join().unwrap();
        drop(relay);
        assert!(!sock.exists(), "the socket is removed");
    }
}
