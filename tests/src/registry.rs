//! Debian's `docker-registry` (CNCF Distribution 2.8), started per test on a free loopback
//! port with its own storage, and stopped when dropped.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct TestRegistry {
    /// `127.0.0.1:PORT`
    pub host: String,
    child: Child,
    _dir: tempfile::TempDir,
    pub log: PathBuf,
}

/// A free loopback port (for services whose address others must know in advance).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> PathBuf {
    for p in ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    panic!(
        "docker-registry is not installed; these tests need a real registry: \
         apt-get install -y docker-registry (scripts/test does this)"
    );
}

impl TestRegistry {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts a registry; `extra` is appended to its YAML config (e.g. `notifications:`).
    pub fn start_with(extra: &str) -> Self {
        Self::start_on(free_port(), extra)
    }

    /// Starts a registry on `port` (see [`free_port`]) that notifies `hook_url` of every
    /// manifest event, as a deployment would configure it.
    pub fn start_notifying(port: u16, hook_url: &str, token: &str) -> Self {
        Self::start_on(
            port,
            &format!(
                "notifications:\n  events:\n    includereferences: true\n  endpoints:\n    - name: receiver\n      url: {hook_url}\n      headers:\n        Authorization: [Bearer {token}]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n      ignoredmediatypes:\n        - application/octet-stream\n"
            ),
        )
    }

    pub fn start_on(port: u16, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{extra}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let child = spawn(&config, &log);
        let r = TestRegistry {
            host,
            child,
            _dir: dir,
            log,
        };
        r.wait_ready();
        r
    }

    /// Stops the registry (its storage stays), as an outage would.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same address and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self._dir.path().join("config.yml"), &self.log);
        self.wait_ready();
    }

    /// Where the registry keeps the bytes of blob `hex` (sha256), so a test can alter what
    /// it serves, as a compromised registry would.
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self._dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(&self.host) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not come up on {}; its log:\n{}",
            self.host,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// `127.0.0.1:PORT/<repo>`
    pub fn repo(&self, repo: &str) -> String {
        format!("{}/{repo}", self.host)
    }
}

fn spawn(config: &Path, log: &Path) -> Child {
    Command::new(binary())
        .arg("serve")
        .arg(config)
        .stdout(Stdio::from(
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        ))
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(log).unwrap(),
        ))
        .spawn()
        .expect("starting docker-registry")
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
