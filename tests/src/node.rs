//! A real Debian node for integration tests: a root made once per machine with `mmdebstrap`,
//! booted with `systemd-nspawn` (systemd as PID 1, the host's network), entered with `nsenter`.
//!
//! Needs root and `apt-get install -y mmdebstrap systemd-container`; a missing tool fails the
//! test saying so, never skips it. `/work/shared/NODE-LAB.md` records what was tried by hand.

use std::{
    fs::{self, File},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread::sleep,
    time::{Duration, Instant},
};

const INSTALL: &str = "apt-get install -y mmdebstrap systemd-container";

/// Fails the test unless it runs as root with the tools this module drives.
fn prerequisites() {
    assert!(
        crate::running_as_root(),
        "a node (mmdebstrap, systemd-nspawn, nsenter) needs root"
    );
    for tool in ["mmdebstrap", "systemd-nspawn", "nsenter"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(found, "{tool} is missing: {INSTALL}");
    }
}

/// The host's release codename (`VERSION_CODENAME` of /etc/os-release), e.g. `bookworm`.
pub fn host_codename() -> String {
    fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .expect("no VERSION_CODENAME in /etc/os-release")
}

/// A Debian root (minbase + systemd, dbus, libssl3, CA certificates) of the host's release,
/// with apt's package lists, so `apt-get install` works in a booted node straight away.
pub struct NodeImage {
    pub dir: PathBuf,
}

impl NodeImage {
    /// The image at `target/node-image/<suite>/`, built on first use (~30-50 s, ~260 MB).
    ///
    /// A lock file serialises the build across threads and processes; the root is built in a
    /// sibling directory and renamed into place, so the directory exists only when complete.
    /// Its apt lists are as old as the image: remove `target/node-image` to refresh them.
    pub fn cached() -> NodeImage {
        prerequisites();
        let suite = host_codename();
        let base = crate::workspace().join("target/node-image");
        fs::create_dir_all(&base).unwrap();
        // Canonical (workspace() has a `..`): the kernel's /proc/PID/root links are compared
        // with the nodes' directories beside it.
        let base = fs::canonicalize(base).unwrap();
        let dir = base.join(&suite);
        let lock = File::create(base.join(format!("{suite}.lock"))).unwrap();
        lock.lock().unwrap(); // flock: released when `lock` drops, even on panic
        if !dir.exists() {
            let building = base.join(format!("{suite}.building"));
            if building.exists() {
                // Left by a build that died; we hold the lock, so nobody else is writing it.
                fs::remove_dir_all(&building).unwrap();
            }
            let started = Instant::now();
            // mmdebstrap removes the package lists it downloaded unless told not to; keeping
            // them is the `apt-get update` a node would otherwise need before installing.
            let out = Command::new("mmdebstrap")
                .args(["--variant=minbase", "--format=directory"])
                .arg("--include=systemd,systemd-sysv,dbus,libssl3,ca-certificates")
                .arg("--skip=cleanup/apt/lists")
                .arg(&suite)
                .arg(&building)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("mmdebstrap: {e}; {INSTALL}"));
            assert!(
                out.status.success(),
                "mmdebstrap {suite} failed ({:?}):\n{}",
                out.status.code(),
                tail(&String::from_utf8_lossy(&out.stderr), 40)
            );
            let lists = fs::read_dir(building.join("var/lib/apt/lists")).unwrap();
            let packages = lists
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"));
            assert!(packages, "the new node image has no apt package lists");
            fs::rename(&building, &dir).unwrap();
            eprintln!(
                "node image {} built in {:.0?}",
                dir.display(),
                started.elapsed()
            );
        }
        NodeImage { dir }
    }
}

/// A booted copy of a [`NodeImage`]: `systemd-nspawn -b`, systemd as its PID 1.
///
/// It shares the host's network: a service inside listening on 127.0.0.1:PORT is reachable
/// from the host, and the node reaches the host's loopback servers. Dropping it powers it off
/// and fails if any of its processes outlived it (see [`Node::shutdown`]).
pub struct Node {
    nspawn: Child,
    pid1: u32,
    machine: String,
    root: PathBuf,
    log: PathBuf,
    done: bool,
    // Last: removed after `Drop::drop` has stopped everything running from it.
    _dir: tempfile::TempDir,
}

impl Node {
    /// Copies `image` to a fresh directory and boots it; returns once systemd inside says the
    /// system is `running` or `degraded` (a failed unit is the test's business, not boot's).
    pub fn boot(image: &NodeImage) -> Node {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        prerequisites();
        // Beside the image: same file system, so `--reflink=auto` can share its blocks.
        let dir = tempfile::Builder::new()
            .prefix("node-")
            .tempdir_in(image.dir.parent().unwrap())
            .unwrap();
        let root = dir.path().join("root");
        crate::succeeded(
            Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(&image.dir)
                .arg(&root)
                .output()
                .unwrap(),
        );
        let machine = format!(
            "pn-node-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let log = dir.path().join("nspawn.log");
        let out = File::create(&log).unwrap();
        // --keep-unit: stay in our own cgroup instead of asking the host's systemd for a
        // scope; hosts without systemd (CI containers) answer "Failed to open system bus".
        // --register=no: no systemd-machined either. --console=pipe: no TTY needed.
        let nspawn = Command::new("systemd-nspawn")
            .args(["-q", "-b", "--register=no", "--keep-unit", "--console=pipe"])
            .arg(format!("--machine={machine}"))
            .arg("-D")
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("systemd-nspawn: {e}; {INSTALL}"));
        let mut node = Node {
            pid1: 0,
            nspawn,
            machine,
            root,
            log,
            done: false,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut state = String::new();
        loop {
            if let Ok(Some(status)) = node.nspawn.try_wait() {
                panic!("the node exited while booting ({status}):\n{}", node.log());
            }
            if node.pid1 == 0 {
                node.pid1 = systemd_child(node.nspawn.id()).unwrap_or(0);
            }
            if node.pid1 != 0 {
                let o = node.exec(&["systemctl", "is-system-running"]);
                state = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                if state == "running" || state == "degraded" {
                    return node;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the node did not boot in 60 s (is-system-running: {state:?}):\n{}",
                node.log()
            );
            sleep(Duration::from_millis(200));
        }
    }

    /// The node's root directory, as seen from the host.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host PID of the node's PID 1 (its systemd).
    pub fn pid1(&self) -> u32 {
        self.pid1
    }

    /// Runs `args` inside the node (all its namespaces), with stdin null and a small
    /// environment: `PATH=/usr/sbin:/usr/bin:/sbin:/bin`, `LANG=C.UTF-8`.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid1.to_string(), "-a", "--"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("nsenter: {e}; {INSTALL}"))
    }

    /// `sh -c script` inside the node.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// The last 50 lines of `unit`'s journal, for failure messages.
    pub fn journal(&self, unit: &str) -> String {
        let o = self.exec(&["journalctl", "-u", unit, "--no-pager", "-n", "50"]);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// What systemd-nspawn printed (the boot console), its last 100 lines.
    pub fn log(&self) -> String {
        tail(&fs::read_to_string(&self.log).unwrap_or_default(), 100)
    }

    /// Powers the node off (`SIGRTMIN+4`, systemd's poweroff signal, to its PID 1), waits up to
    /// 30 s for systemd-nspawn and kills it if it lingers. Then fails, naming them, if processes
    /// of the node outlived it: a daemon started from an `nsenter` shell once did (NODE-LAB.md),
    /// and would hold ports and files across tests. They are killed either way. Idempotent;
    /// `Drop` calls it, and only reports on stderr when the thread is already panicking.
    pub fn shutdown(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if matches!(self.nspawn.try_wait(), Ok(None)) {
            // No PID 1 yet (a boot that failed early): nothing to power off, kill at once.
            let mut deadline = Instant::now();
            if self.pid1 != 0 {
                let _ = Command::new("kill")
                    .args(["-s", "RTMIN+4", &self.pid1.to_string()])
                    .status();
                deadline += Duration::from_secs(30);
            }
            while matches!(self.nspawn.try_wait(), Ok(None)) && Instant::now() < deadline {
                sleep(Duration::from_millis(100));
            }
            if matches!(self.nspawn.try_wait(), Ok(None)) {
                eprintln!(
                    "node {}: systemd-nspawn still running, killed",
                    self.machine
                );
                let _ = self.nspawn.kill();
                let _ = self.nspawn.wait();
            }
        }
        let survivors = survivors(&self.root);
        for (pid, _) in &survivors {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .status();
        }
        if survivors.is_empty() {
            return;
        }
        let names: Vec<String> = survivors
            .iter()
            .map(|(pid, what)| format!("  {pid} {what}"))
            .collect();
        let msg = format!(
            "processes of node {} outlived it (killed):\n{}",
            self.machine,
            names.join("\n")
        );
        if std::thread::panicking() {
            eprintln!("{msg}");
        } else {
            panic!("{msg}");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The child of `nspawn` that runs systemd: the node's PID 1 as the host numbers it.
fn systemd_child(nspawn: u32) -> Option<u32> {
    let tasks = fs::read_dir(format!("/proc/{nspawn}/task")).ok()?;
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        // Before it execs systemd, the child is still a copy of systemd-nspawn.
        .find(|p| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "systemd")
        })
}

/// Host processes whose root directory is the node's root or under it, as (pid, "comm cmdline").
///
/// Inside the node's mount namespace `readlink /proc/PID/root` says `/`, so that link alone
/// cannot tell a node's process from a host one: the root directory's device and inode (what
/// `stat /proc/PID/root` follows to) do. The link catches processes chrooted from the host.
fn survivors(root: &Path) -> Vec<(u32, String)> {
    let Ok(meta) = fs::metadata(root) else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let proc_root = e.path().join("root");
        let same_dir =
            fs::metadata(&proc_root).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        let under = fs::read_link(&proc_root).is_ok_and(|l| l.starts_with(root));
        if pid != me && (same_dir || under) {
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, format!("{} {}", comm.trim(), cmdline.trim())));
        }
    }
    found
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
