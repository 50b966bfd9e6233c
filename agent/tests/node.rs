//! The walkthrough's last step, on a real Debian node: a root made with mmdebstrap, booted
//! with systemd-nspawn, `module-agent` running inside as the repository's systemd unit with
//! the example configuration, against a real receiver and registry on the host's loopback.
//!
//! One node goes through the whole life of a module, in order (installing packages is the
//! slow part, so it is done once): an unreachable apt repository changes nothing; the
//! walkthrough (`redis-cli ping` → PONG on the module's configuration, files over the
//! packages' own taken over with dpkg-divert); a configuration change restarts redis; the
//! agent SIGKILLed at each step of an activation recovers whole; a configuration redis
//! refuses is rolled back within the retry budget; unassigning restores `/etc` and purges
//! what the agent installed.
//!
//! The node shares the host's network, where Redis and others may already listen: the test's
//! copies of the example modules move redis and sshd to free ports, and the test-only module
//! `redis-tls-test` carries the TLS material my-redis's configuration names (a throwaway CA
//! and key made here; runbooks/operating-nodes.md says how real nodes get theirs).

#[path = "../../webhook/tests/common/mod.rs"]
mod common;
mod support;
use common::{fleet::*, release::*, *};
use powernode_module::lifecycle::StagePolicy;
use powernode_testkit::{
    node::{Node, NodeImage},
    registry::TestRegistry,
    succeeded,
};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

/// The modules the template is made of (the first three come with my-redis's closure).
const MODULES: [&str; 4] = [
    "system-base",
    "security-hardening",
    "my-redis",
    "redis-tls-test",
];

/// Everything on the host side: receiver, registry, signing keys, the module sources.
struct Fleet {
    r: Running,
    reg: TestRegistry,
    k: Keys,
    sources: BTreeMap<&'static str, tempfile::TempDir>,
    redis_port: u16,
    tls_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// The test-only TLS module: a CA, a server certificate and its key, made now.
fn tls_module(dir: &Path) {
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
    async fn start(db: &TestDb) -> (Fleet, String, String) {
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
    async fn release_redis(&self, version: &str, edit: impl FnOnce(String) -> String) {
        let dir = self.sources["my-redis"].path();
        let conf = dir.join("rootfs/etc/redis/redis.conf");
        fs::write(&conf, edit(fs::read_to_string(&conf).unwrap())).unwrap();
        release_live(&self.r, &self.reg, &self.k, dir, "my-redis", version).await;
    }

    async fn drift(&self) -> Value {
        let (s, v) = self
            .r
            .get("/api/v1/instances/node-1/drift", Some(READ_TOKEN))
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn instance(&self) -> Value {
        let (s, v) = self
            .r
            .get("/api/v1/instances/node-1", Some(READ_TOKEN))
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }
}

/// The node with the agent installed from the repository's unit file and example config.
struct Agent {
    node: Node,
}

impl Agent {
    fn install(node: Node, receiver: &str, token: &str, pem: &str) -> Agent {
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
    fn ok(&self, script: &str) -> String {
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
    fn redis(&self, port: u16, args: &str) -> String {
        let o = self.node.sh(&format!("redis-cli -p {port} {args}"));
        let said = out(&o);
        if said.is_empty() {
            String::from_utf8_lossy(&o.stderr).trim().to_owned()
        } else {
            said
        }
    }

    /// Holds the agent at `point` of its next activation (a debug build's fault point).
    fn hold_at(&self, point: &str) {
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

    fn release_hold(&self) {
        let _ = fs::remove_dir_all(
            self.node
                .root()
                .join("etc/systemd/system/module-agent.service.d"),
        );
        self.ok("systemctl daemon-reload && systemctl restart module-agent");
    }

    /// Holds dpkg's lock as apt and unattended-upgrades do (an fcntl write lock on
    /// `/var/lib/dpkg/lock-frontend`) for `how_long`, from a transient unit in the node.
    fn hold_dpkg_lock(&self, how_long: Duration) {
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
    fn kill_when_held(&self, point: &str) {
        let line = format!("fault point {point}");
        self.wait_journal(&line, Duration::from_secs(180));
        self.ok("kill -KILL $(systemctl show -p MainPID --value module-agent)");
    }

    fn wait_journal(&self, what: &str, limit: Duration) {
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
    fn etc(&self) -> BTreeMap<String, (u32, u32, Vec<u8>)> {
        support::snapshot(&self.node.root().join("etc"))
    }
}

/// Waits until the instance's last report satisfies `done`; the report and the agent's
/// journal on timeout.
async fn wait_report(
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
fn mcp_phase(f: &Fleet, phase: &str) -> Value {
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

fn applied(v: &Value) -> bool {
    v["drift"] == false && v["status"] == "applied"
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_node_runs_the_module_and_comes_back_whole() {
    let db = sqlite().await;
    let (f, token, pem) = Fleet::start(&db).await;
    let image = NodeImage::cached();
    let node = Node::boot(&image);
    let a = Agent::install(node, &f.r.url, &token, &pem);
    let etc_before = a.etc();
    let packages_before = a.ok("dpkg-query -W -f '${Package}\\n' | sort");

    // 1. The node's apt cannot reach its repository: the state fails with apt's own words,
    //    and nothing on the node changes.
    let sources =
        a.ok("cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null; true");
    a.ok("mkdir -p /root/apt-saved && mv /etc/apt/sources.list.d /etc/apt/sources.list /root/apt-saved/ 2>/dev/null; \
          mkdir /etc/apt/sources.list.d && echo 'deb http://127.0.0.1:9/debian bookworm main' > /etc/apt/sources.list \
          && rm -rf /var/lib/apt/lists/* && systemctl start module-agent");
    let v = wait_report(&f, &a, Duration::from_secs(120), "apt to fail", |v| {
        v["status"] == "failed"
    })
    .await;
    let msg = f.instance().await["instance"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("Unable to locate package") || msg.contains("127.0.0.1:9"),
        "{msg}\n{v:#}"
    );
    assert!(
        a.node
            .sh("test -e /var/lib/module-agent/current")
            .status
            .code()
            == Some(1),
        "no generation became active"
    );
    assert_eq!(
        a.ok("dpkg-query -W -f '${Package}\\n' | sort"),
        packages_before,
        "no package came or went"
    );
    a.ok("systemctl stop module-agent && rm -f /etc/apt/sources.list && rmdir /etc/apt/sources.list.d \
          && mv /root/apt-saved/* /etc/apt/ && rmdir /root/apt-saved && rm -f /var/lib/module-agent/attempts.json");
    assert!(!sources.is_empty());

    // 2. The walkthrough: from live + assignment to PONG on the module's configuration.
    let t = Instant::now();
    a.ok("systemctl start module-agent");
    wait_report(
        &f,
        &a,
        Duration::from_secs(300),
        "the walkthrough to apply",
        applied,
    )
    .await;
    let journal =
        a.ok("journalctl -u module-agent -o cat --no-pager | grep 'packages installed' | tail -1");
    let apt_secs = journal
        .split("\"secs\":")
        .nth(1)
        .and_then(|r| r.split(['}', ',']).next())
        .unwrap_or("?")
        .to_owned();
    eprintln!(
        "node: live + assignment -> applied (PONG) in {:.1} s, of which apt {apt_secs} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(a.ok("systemctl is-active redis-server"), "active");
    // The generation redis reads is the mounted composefs image, in every service's view.
    let mounts = a.ok("grep ' - overlay composefs:' /proc/$(systemctl show -p MainPID --value redis-server)/mountinfo");
    assert!(
        mounts.contains("/var/lib/module-agent/generations/"),
        "{mounts}"
    );
    assert_eq!(a.redis(f.redis_port, "ping"), "PONG");
    assert_eq!(
        a.redis(f.redis_port, "CONFIG GET appendonly"),
        "appendonly\nyes",
        "the module's configuration is in effect"
    );
    assert_eq!(
        // redis asks TLS clients for a certificate of the same CA (tls-auth-clients yes).
        a.redis(
            f.tls_port,
            "--tls --cacert /etc/redis/tls/ca.crt --cert /etc/redis/tls/server.crt \
             --key /etc/redis/tls/server.key ping"
        ),
        "PONG",
        "TLS with the test module's certificate"
    );
    let login_defs = fs::read(
        f.sources["security-hardening"]
            .path()
            .join("rootfs/etc/login.defs"),
    )
    .unwrap();
    // The root's links are absolute inside the node: read them there.
    assert_eq!(
        a.ok("cat /etc/login.defs"),
        String::from_utf8_lossy(&login_defs).trim_end()
    );
    let diversions = a.ok("dpkg-divert --list");
    for path in ["/etc/login.defs", "/etc/redis/redis.conf"] {
        assert!(
            diversions.contains(&format!("local diversion of {path} to {path}.distrib")),
            "{path} diverted: {diversions}"
        );
    }
    assert_eq!(
        fs::read(a.node.root().join("etc/login.defs.distrib")).unwrap(),
        etc_before["login.defs"].2,
        "the package's copy kept aside"
    );
    assert!(
        a.node
            .root()
            .join("var/lib/module-agent/backup/etc/hostname")
            .exists(),
        "an unowned file is backed up"
    );
    let inst = f.instance().await;
    let redis = &inst["instance"]["modules"]["my-redis"];
    assert!(
        redis["packages"]["redis-server"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{inst:#}"
    );
    assert_eq!(redis["units"]["redis-server.service"], "active", "{inst:#}");
    let running = &inst["instance"]["running_module_digests"];
    assert_eq!(running.as_object().map(|m| m.len()), Some(4), "{inst:#}");
    // The same, as an assistant asks it: the official Python MCP SDK against /mcp.
    let mcp = mcp_phase(&f, "node");
    assert!(
        mcp["redis_server"].as_str().is_some_and(|v| !v.is_empty()),
        "{mcp}"
    );
    let pid = a.ok("systemctl show -p MainPID --value redis-server");

    // 3. A configuration-only change: redis restarted on the new configuration.
    let t = Instant::now();
    f.release_redis("0.2.0", |c| c + "maxmemory-policy allkeys-lru\n")
        .await;
    while a.redis(f.redis_port, "CONFIG GET maxmemory-policy") != "maxmemory-policy\nallkeys-lru" {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{}",
            a.node.journal("module-agent")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "node: promotion of a config change -> redis on it in {:.2} s (interval 1 s)",
        t.elapsed().as_secs_f64()
    );
    assert_ne!(
        a.ok("systemctl show -p MainPID --value redis-server"),
        pid,
        "restarted"
    );
    wait_report(&f, &a, Duration::from_secs(60), "0.2.0 applied", applied).await;

    // 4. SIGKILL at every step of an activation, then a restart: whole, on the new state.
    for (i, point) in [
        "activate.journaled",
        "activate.prepared",
        "activate.switched",
        "activate.pruned",
        "activate.healthy",
    ]
    .into_iter()
    .enumerate()
    {
        a.hold_at(point);
        f.release_redis(&format!("0.2.{}", i + 1), |c| {
            c + &format!("# crash test {i}\n")
        })
        .await;
        a.kill_when_held(point);
        a.release_hold();
        let v = wait_report(
            &f,
            &a,
            Duration::from_secs(60),
            "the new state after a crash",
            applied,
        )
        .await;
        assert_eq!(a.redis(f.redis_port, "ping"), "PONG", "{point}");
        assert!(
            !a.node
                .root()
                .join("var/lib/module-agent/activation.json")
                .exists(),
            "{point}"
        );
        assert!(
            a.ok("cat /etc/redis/redis.conf")
                .ends_with(&format!("# crash test {i}")),
            "{point}: the new configuration, whole: {v:#}"
        );
        // Every managed path resolves: nothing dangles, nothing is half-taken-over.
        a.ok("for f in $(find /etc /var/lib/redis -type l -lname '/var/lib/module-agent/*'); do test -e \"$f\" || { echo dangling $f; exit 1; }; done");
    }
    assert!(
        a.node
            .journal("module-agent")
            .contains("an activation was interrupted; going back")
    );

    // 5. A configuration redis refuses: rolled back, PONG on the previous configuration, the
    //    report says why, and no retry beyond the budget (2).
    f.release_redis("0.3.0", |c| c + "this-is-not-a-redis-directive yes\n")
        .await;
    let v = wait_report(
        &f,
        &a,
        Duration::from_secs(120),
        "the bad configuration to be rejected",
        |v| v["status"] == "rejected",
    )
    .await;
    let msg = f.instance().await["instance"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains("redis-server.service"), "{msg}\n{v:#}");
    assert_eq!(a.redis(f.redis_port, "ping"), "PONG");
    assert_eq!(
        a.redis(f.redis_port, "CONFIG GET maxmemory-policy"),
        "maxmemory-policy\nallkeys-lru"
    );
    let attempts = a.ok("cat /var/lib/module-agent/attempts.json");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        a.ok("cat /var/lib/module-agent/attempts.json"),
        attempts,
        "not tried again"
    );
    assert!(attempts.contains("\"count\":2"), "{attempts}");

    // 6. Unassign: packages the agent installed purged, diversions and backups restored,
    //    /etc as it was. unattended-upgrades holds the dpkg lock meanwhile (a stand-in
    //    holding it for 10 s as apt does, an fcntl lock on lock-frontend): the agent's apt
    //    waits for it instead of failing.
    a.hold_dpkg_lock(Duration::from_secs(10));
    for m in ["my-redis", "redis-tls-test"] {
        let (s, v, _) = call(
            &f.r,
            reqwest::Method::DELETE,
            &format!("/templates/edge/assignments/{m}"),
            OPS_TOKEN,
            None,
            &[],
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    wait_report(&f, &a, Duration::from_secs(180), "the empty state", applied).await;
    let inst = f.instance().await;
    assert_eq!(
        inst["instance"]["running_module_digests"],
        json!({}),
        "{inst:#}"
    );
    a.wait_journal("waited for the dpkg lock", Duration::from_secs(5));
    a.ok("systemctl stop module-agent");
    assert!(!a.ok("dpkg-divert --list").contains("local diversion"));
    assert_eq!(
        a.ok("dpkg-query -W -f '${Package}\\n' | sort"),
        packages_before,
        "what the agent installed is purged"
    );
    let etc_after = a.etc();
    // Debian never removes a system user on purge (redis, sshd's): those four files and
    // their backups keep the accounts. Everything else is byte for byte as before.
    let accounts = [
        "passwd", "group", "shadow", "gshadow", "passwd-", "group-", "shadow-", "gshadow-",
        "subuid", "subgid",
    ];
    let changed: Vec<&String> = etc_before
        .keys()
        .chain(etc_after.keys())
        .filter(|p| etc_before.get(*p) != etc_after.get(*p))
        .filter(|p| !accounts.contains(&p.as_str()))
        .collect();
    assert!(changed.is_empty(), "/etc changed: {changed:?}");
}
