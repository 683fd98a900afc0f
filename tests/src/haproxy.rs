//! A PROXY protocol peer nobody here wrote: HAProxy (Debian package
//! `haproxy`) on loopback, started with a configuration of the test's and
//! killed by its PID when [`Haproxy`] is dropped.
//!
//! HAProxy cannot report a port it was given as 0, so [`free_port`] finds
//! one the kernel just handed out and released; [`Haproxy::start`] waits
//! until every given port accepts.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One running HAProxy; killed (by its PID) when dropped.
#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
}

/// A loopback address whose port the kernel just gave out and took back:
/// free for the moment (another process could take it; the tests that
/// use it run HAProxy at once).
pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap()
}

impl Haproxy {
    /// Runs `haproxy -db -f FILE` with `config` (its `global` and
    /// `defaults` sections included) and waits until each of `ports`
    /// accepts a connection.
    pub fn start(config: &str, ports: &[SocketAddr]) -> Haproxy {
        let bin = crate::needs::tool("haproxy", "haproxy");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let check = Command::new(&bin)
            .args(["-c", "-q", "-f"])
            .arg(&path)
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy refused the test's configuration:\n{config}\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut child = Command::new(&bin)
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn haproxy");
        let deadline = Instant::now() + crate::WAIT;
        for &p in ports {
            while std::net::TcpStream::connect_timeout(&p, Duration::from_millis(200)).is_err() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("haproxy exited ({status}) before {p} accepted");
                }
                assert!(Instant::now() < deadline, "haproxy never accepted on {p}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Haproxy { child, _dir: dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
