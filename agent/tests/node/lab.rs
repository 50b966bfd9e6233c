//! The node test's lab: the fleet on the host (receiver, registry, the example modules moved
//! to free ports, the test-only TLS module) and the agent installed in a booted node, with the
//! verbs the test speaks in.

use crate::common::{fleet::*, release::*, *};
use powernode_module::lifecycle::StagePolicy;
use powernode_testkit::{node::Node, registry::TestRegistry, succeeded};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

/// The modules the template is made of (the first three come with my-redis's closure).
pub const MODULES: [&str; 4] = [
    "system-base",
    "security-hardening",
    "my-redis",
    "redis-tls-test",
];

/// Everything on the host side: receiver, registry, signing keys, the module sources.
pub struct Fleet {
    pub r: Running,
    pub reg: TestRegistry,
    pub k: Keys,
    pub sources: BTreeMap<&'static str, tempfile::TempDir>,
    pub redis_port: u16,
    pub tls_port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// The test-only TLS module: a CA, a server certificate and its key, made now.
pub fn tls_module(dir: &Path) {
    let tls = dir.join("rootfs/etc/redis/tls");
    fs::create_dir_all(&tls).unwrap();
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(&tls)
            .output()
            .expect("openssl is missing: apt-get install -y openssl");
        succeeded(o);
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=test-ca",
                "-days",
                "2",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    openssl(&[
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
    ]);
    for scratch in ["ca.key", "server.csr", "ca.srl"] {
        let _ = fs::remove_file(tls.join(scratch));
    }
    fs::write(
        dir.join("manifest.yaml"),
        r#"schema_version: 1
identity:
  name: redis-tls-test
  category: userland
  variety: subscription
  description: "TEST ONLY: a throwaway CA, certificate and private key for my-redis's TLS port"
file_spec:
  include:
    - "/etc/redis/tls/*"
modes:
  # redis reads it as its own user; owners are always root in a module.
  "/etc/redis/tls/server.key": "0644"
"#,
    )
    .unwrap();
}

impl Fleet {
    /// The example modules released and live, a template `edge` with my-redis and its TLS
    /// material, one registered instance.
    pub async fn start(db: &TestDb) -> (Fleet, String, String) {
        let reg = TestRegistry::start();
        let k = keys();
        let policies = MODULES
            .iter()
            .map(|m| key_policy(m, &repo(m), k.public.clone()))
            .collect();
        let mut cfg = config(&db.url, &reg.host, policies);
        cfg.promotion.live = StagePolicy::default();
        // The agent's tests are about the agent: the receiver's report budget (its own tests,
        // webhook/tests/report_bounds.rs) stays out of their way.
        cfg.fleet.max_reports = 10_000;
        let r = serve(cfg).await;
        let (redis_port, tls_port, ssh_port) = (free_port(), free_port(), free_port());
        let mut sources = BTreeMap::new();
        for name in MODULES {
            let dir = if name == "redis-tls-test" {
                let d = tempfile::tempdir().unwrap();
                tls_module(d.path());
                d
            } else {
                module(name)
            };
            match name {
                "my-redis" => {
                    let conf = dir.path().join("rootfs/etc/redis/redis.conf");
                    let text = fs::read_to_string(&conf)
                        .unwrap()
                        .replace("port 6379", &format!("port {redis_port}"))
                        .replace("tls-port 6380", &format!("tls-port {tls_port}"));
                    fs::write(conf, text).unwrap();
                }
                "security-hardening" => {
                    let conf = dir
                        .path()
                        .join("rootfs/etc/ssh/sshd_config.d/50-powernode-hardening.conf");
                    let text = fs::read_to_string(&conf).unwrap();
                    fs::write(conf, format!("Port {ssh_port}\n{text}")).unwrap();
                }
                _ => {}
            }
            let v = if name == "my-redis" { "0.1.0" } else { "1.0.0" };
            release_live(&r, &reg, &k, dir.path(), name, v).await;
            sources.insert(name, dir);
        }
        template_with(&r, "edge", &["my-redis", "redis-tls-test"]).await;
        let token = register(&r, "node-1", "edge").await;
        let (_, pem) = r.get("/api/v1/signing-key", None).await;
        let fleet = Fleet {
            r,
            reg,
            k,
            sources,
            redis_port,
            tls_port,
        };
        (fleet, token, pem.as_str().unwrap().to_owned())
    }

    /// Releases my-redis `version` with `edit` applied to its redis.conf, live.
    pub async fn release_redis(&self, version: &str, edit: impl FnOnce(String) -> String) {
        let dir = self.sources["my-redis"].path();
        let conf = dir.join("rootfs/etc/redis/redis.conf");
        fs::write(&conf, edit(fs::read_to_string(&conf).unwrap())).unwrap();
        release_live(&self.r, &self.reg, &self.k, dir, "my-redis", version).await;
    }

    pub async fn drift(&self) -> Value {
        let (s, v) = self
            .r
            .get("/api/v1/instances/node-1/drift", Some(READ_TOKEN))
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    pub async fn instance(&self) -> Value {
        let (s, v) = self
            .r
            .get("/api/v1/instances/node-1", Some(READ_TOKEN))
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }
}

/// The node with the agent installed from the repository's unit file and example config.
pub struct Agent {
    pub node: Node,
}

impl Agent {
    pub fn install(node: Node, receiver: &str, token: &str, pem: &str) -> Agent {
        let root = node.root().to_path_buf();
        let ws = powernode_testkit::workspace();
        fs::copy(
            env!("CARGO_BIN_EXE_module-agent"),
            root.join("usr/local/bin/module-agent"),
        )
        .unwrap();
        fs::create_dir_all(root.join("etc/module-agent")).unwrap();
        // The example configuration, with this fleet's receiver and a short interval.
        let mut config = String::new();
        for line in fs::read_to_string(ws.join("agent/agent.example.toml"))
            .unwrap()
            .lines()
        {
            let key = line.split(" = ").next().unwrap_or_default();
            let line = match key {
                "receiver" => format!("receiver = {receiver:?}"),
                "interval" => "interval = 1".into(),
                "retry_budget" => "retry_budget = 2".into(),
                "health_timeout" => "health_timeout = 30".into(),
                _ => line.to_owned(),
            };
            config.push_str(&line);
            config.push('\n');
        }
        fs::write(root.join("etc/module-agent/agent.toml"), config).unwrap();
        fs::write(root.join("etc/module-agent/token"), token).unwrap();
        fs::write(root.join("etc/module-agent/receiver.pub"), pem).unwrap();
        fs::copy(
            ws.join("agent/module-agent.service"),
            root.join("etc/systemd/system/module-agent.service"),
        )
        .unwrap();
        let agent = Agent { node };
        agent.ok("systemctl daemon-reload && systemctl enable module-agent");
        agent
    }

    /// Runs a shell script in the node, which must succeed; its output.
    pub fn ok(&self, script: &str) -> String {
        let o = self.node.sh(script);
        assert!(
            o.status.success(),
            "{script}: {}\n{}\nagent's journal:\n{}",
            out(&o),
            String::from_utf8_lossy(&o.stderr),
            self.node.journal("module-agent")
        );
        out(&o)
    }

    /// `redis-cli` inside the node; its error output when it printed nothing else.
    pub fn redis(&self, port: u16, args: &str) -> String {
        let o = self.node.sh(&format!("redis-cli -p {port} {args}"));
        let said = out(&o);
        if said.is_empty() {
            String::from_utf8_lossy(&o.stderr).trim().to_owned()
        } else {
            said
        }
    }

    /// Holds the agent at `point` of its next activation (a debug build's fault point).
    pub fn hold_at(&self, point: &str) {
        let dropin = self
            .node
            .root()
            .join("etc/systemd/system/module-agent.service.d");
        fs::create_dir_all(&dropin).unwrap();
        fs::write(
            dropin.join("fault.conf"),
            format!("[Service]\nEnvironment=MODULE_AGENT_FAULT={point}\n"),
        )
        .unwrap();
        self.ok("systemctl daemon-reload && systemctl restart module-agent");
    }

    pub fn release_hold(&self) {
        let _ = fs::remove_dir_all(
            self.node
                .root()
                .join("etc/systemd/system/module-agent.service.d"),
        );
        self.ok("systemctl daemon-reload && systemctl restart module-agent");
    }

    /// Holds dpkg's lock as apt and unattended-upgrades do (an fcntl write lock on
    /// `/var/lib/dpkg/lock-frontend`) for `how_long`, from a transient unit in the node.
    pub fn hold_dpkg_lock(&self, how_long: Duration) {
        let script = self.node.root().join("usr/local/sbin/hold-dpkg-lock");
        fs::write(
            &script,
            "use Fcntl qw(F_SETLKW F_WRLCK SEEK_SET);\n$| = 1;\n\
             open(my $f, '>>', '/var/lib/dpkg/lock-frontend') or die \"open: $!\";\n\
             my $s = pack('s s x4 q q i x4', F_WRLCK, SEEK_SET, 0, 0, 0);\n\
             fcntl($f, F_SETLKW, $s) or die \"lock: $!\";\n\
             print \"holding\\n\";\n\
             sleep $ARGV[0];\n",
        )
        .unwrap();
        self.ok(&format!(
            "systemd-run --unit=unattended-upgrades-standin perl /usr/local/sbin/hold-dpkg-lock {}",
            how_long.as_secs()
        ));
        let t = Instant::now();
        while !self
            .node
            .journal("unattended-upgrades-standin")
            .contains("holding")
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{}",
                self.node.journal("unattended-upgrades-standin")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILLs the agent once it waits at its fault point.
    pub fn kill_when_held(&self, point: &str) {
        let line = format!("fault point {point}");
        self.wait_journal(&line, Duration::from_secs(180));
        self.ok("kill -KILL $(systemctl show -p MainPID --value module-agent)");
    }

    pub fn wait_journal(&self, what: &str, limit: Duration) {
        let t = Instant::now();
        while !self.node.journal("module-agent").contains(what) {
            assert!(
                t.elapsed() < limit,
                "no {what:?} in the agent's journal:\n{}",
                self.node.journal("module-agent")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every path under the node's /etc: mode, owner, content or link target.
    pub fn etc(&self) -> BTreeMap<String, (u32, u32, Vec<u8>)> {
        crate::support::snapshot(&self.node.root().join("etc"))
    }
}

/// Waits until the instance's last report satisfies `done`; the report and the agent's
/// journal on timeout.
pub async fn wait_report(
    f: &Fleet,
    a: &Agent,
    limit: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let t = Instant::now();
    loop {
        let v = f.drift().await;
        if done(&v) {
            return v;
        }
        assert!(
            t.elapsed() < limit,
            "waited {limit:?} for {what}; last drift: {v:#}\nagent's journal:\n{}",
            a.node.journal("module-agent")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One phase of webhook/tests/mcp/walkthrough.py, through the official Python MCP SDK (the
/// venv scripts/test makes); what it printed last.
pub fn mcp_phase(f: &Fleet, phase: &str) -> Value {
    let ws = powernode_testkit::workspace();
    let python = ws.join("target/mcp-venv/bin/python");
    assert!(
        python.exists(),
        "the official Python MCP SDK is needed: python3 -m venv target/mcp-venv && \
         target/mcp-venv/bin/pip install \"mcp==2.3.*\" (scripts/test does this)"
    );
    let o = Command::new(python)
        .arg(ws.join("webhook/tests/mcp/walkthrough.py"))
        .arg(phase)
        .env("MCP_URL", format!("{}/mcp", f.r.url))
        .env("OPS_TOKEN", OPS_TOKEN)
        .env("READ_TOKEN", READ_TOKEN)
        .env("INSTANCE", "node-1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "MCP phase {phase}: {said}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(said.lines().last().unwrap_or_default()).unwrap()
}

pub fn applied(v: &Value) -> bool {
    v["drift"] == false && v["status"] == "applied"
}
