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
#[path = "node/lab.rs"]
mod lab;
mod support;
use common::{fleet::*, *};
use lab::*;
// The node lab's receiver, not the webhook tests' fleet verbs (both are glob-imported).
use lab::Fleet;
use powernode_testkit::node::{Node, NodeImage};
use serde_json::json;
use std::{
    fs,
    time::{Duration, Instant},
};

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
    assert!(
        inst["instance"]["state_bytes"]
            .as_i64()
            .is_some_and(|n| n > 0),
        "the agent reports its state directory's size: {inst:#}"
    );
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
