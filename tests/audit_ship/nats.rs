//! A real `nats-server -js` for one test: free loopback port, its own store
//! directory (kept across stop/start, so a restart finds the stream again).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{free_port, wait_until};

pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
    log: PathBuf,
}

/// `PGVEIL_NATS_SERVER`, else `nats-server` on PATH or in /usr/sbin (Debian).
fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("PGVEIL_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server not found: run scripts/install-nats.sh (Debian package nats-server)"
            )
        })
}

impl Nats {
    pub fn start() -> Nats {
        let store = tempfile::tempdir().expect("tempdir");
        let log = store.path().join("nats.log");
        let mut n = Nats {
            child: None,
            port: free_port(),
            store,
            log,
        };
        n.spawn();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "nats-server already running");
        let child = Command::new(binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.store.path().join("js"))
            .arg("-l")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(15), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "nats-server did not listen:\n{}",
            self.log()
        );
    }

    /// Stops the server with `sig` (SIGTERM: clean; SIGKILL: mid-publish).
    pub fn stop(&mut self, sig: i32) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain syscall on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop(libc::SIGKILL);
    }
}
