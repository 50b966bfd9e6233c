//! The agent against a real receiver and a real registry, on a temporary root: it applies
//! the signed desired state, verifies every module itself, switches generations, rolls back
//! when the health command fails, gives up after its retry budget, refuses what it cannot
//! trust, and reports what runs.

#[path = "../../webhook/tests/common/mod.rs"]
mod common;
mod support;
use common::{fleet::*, release::*, *};
use module_agent::apply::Outcome;
use powernode_module::lifecycle::StagePolicy;
use serde_json::json;
use std::{fs, os::unix::fs::PermissionsExt, path::Path};
use support::*;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread")]
async fn applies_verifies_switches_generations_and_reports() {
    let db = sqlite().await;
    let (r, reg, k, node, sources) = setup(&db, false).await;
    let agent = node.opts.agent().unwrap();
    assert_eq!(
        agent.apply_once().await.unwrap(),
        Outcome::Applied { generation: 1 }
    );

    // The composed files, visible under --root, with their modes.
    let conf = node.root().join("etc/redis/redis.conf");
    assert_eq!(
        fs::read_to_string(&conf).unwrap(),
        fs::read_to_string(sources[2].path().join("rootfs/etc/redis/redis.conf")).unwrap()
    );
    assert!(
        node.root().join("etc/fstab").exists(),
        "system-base came along"
    );
    assert_eq!(
        mode(&node.root().join("etc/sudoers.d/10-powernode")),
        0o440,
        "modes from the manifest"
    );
    assert!(
        !node.root().join("etc/redis/sentinel.conf").exists(),
        "excluded by my-redis"
    );
    // Run as root (as CI does), the tree is owned by 0:0, as in the image.
    use std::os::unix::fs::MetadataExt;
    if fs::metadata("/proc/self").unwrap().uid() == 0 {
        let m = fs::metadata(&conf).unwrap();
        assert_eq!((m.uid(), m.gid()), (0, 0), "owned by root, as in the image");
    }
    let v = drift(&r).await;
    assert_eq!(v["drift"], false, "{v}");

    // Unchanged: one conditional request, nothing rebuilt.
    assert_eq!(agent.apply_once().await.unwrap(), Outcome::Unchanged);
    let o = node.cli(&["status", "--format", "json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["current"], 1, "{st}");
    let o = node.cli(&["verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // A newer my-redis goes live: generation 2, the first kept as previous.
    let redis = &sources[2];
    fs::write(
        redis.path().join("rootfs/etc/redis/redis.conf"),
        "port 6380\n",
    )
    .unwrap();
    release_live(&r, &reg, &k, redis.path(), "my-redis", "0.2.0").await;
    assert_eq!(
        agent.apply_once().await.unwrap(),
        Outcome::Applied { generation: 2 }
    );
    assert_eq!(fs::read_to_string(&conf).unwrap(), "port 6380\n");
    let st: serde_json::Value =
        serde_json::from_slice(&node.cli(&["status", "--format", "json"]).stdout).unwrap();
    assert_eq!(
        (st["current"].clone(), st["previous"].clone()),
        (json!(2), json!(1)),
        "{st}"
    );
    assert_eq!(drift(&r).await["drift"], false);

    // Tampering with an applied file is found by verify.
    fs::write(&conf, "port 1\n").unwrap();
    let o = node.cli(&["verify"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("TAMPERED /etc/redis/redis.conf"), "{out}");

    // Rollback by hand goes back to generation 1.
    let o = node.cli(&["rollback"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let original = fs::read_to_string(
        powernode_testkit::example("my-redis").join("rootfs/etc/redis/redis.conf"),
    )
    .unwrap();
    assert_eq!(fs::read_to_string(&conf).unwrap(), original);

    // An object altered in the store: verify names it, and the next generation that needs
    // it is refused (nothing changes) until the object is fetched again.
    let d = powernode_module::artifact::hash::fsverity_of(original.as_bytes());
    let hex = d.hex();
    let object = node
        .dir
        .path()
        .join("state/objects")
        .join(&hex[..2])
        .join(&hex[2..]);
    fs::write(&object, "bind 0.0.0.0\n".repeat(10)).unwrap();
    let out = String::from_utf8_lossy(&node.cli(&["verify"]).stdout).into_owned();
    assert!(
        out.contains(&format!("TAMPERED object {d} was altered")),
        "{out}"
    );
    fs::write(redis.path().join("rootfs/etc/redis/redis.conf"), &original).unwrap();
    fs::write(redis.path().join("rootfs/etc/redis/extra.conf"), "x\n").unwrap();
    release_live(&r, &reg, &k, redis.path(), "my-redis", "0.3.0").await;
    let o = agent.apply_once().await.unwrap();
    assert!(
        matches!(&o, Outcome::Failed { reason } if reason.contains("altered")),
        "{o:?}"
    );
    assert_eq!(
        fs::read_to_string(&conf).unwrap(),
        original,
        "the active generation is untouched"
    );
    let o = agent.apply_once().await.unwrap();
    assert!(matches!(o, Outcome::Applied { .. }), "fetched again: {o:?}");
    assert!(node.root().join("etc/redis/extra.conf").exists());
    assert_eq!(drift(&r).await["drift"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_health_rolls_back_then_the_target_is_rejected() {
    let db = sqlite().await;
    let (r, reg, k, mut node, sources) = setup(&db, false).await;
    assert_eq!(
        node.opts.agent().unwrap().apply_once().await.unwrap(),
        Outcome::Applied { generation: 1 }
    );
    node.opts.health_command = Some("test ! -e \"$MODULE_AGENT_ROOT/etc/redis/broken\"".into());
    let agent = node.opts.agent().unwrap();
    let redis = &sources[2];
    fs::write(redis.path().join("rootfs/etc/redis/broken"), "x\n").unwrap();
    release_live(&r, &reg, &k, redis.path(), "my-redis", "0.2.0").await;
    for attempt in 1..=3 {
        let o = agent.apply_once().await.unwrap();
        match attempt {
            1 | 2 => assert!(
                matches!(&o, Outcome::Failed { reason } if reason.contains("health command")),
                "{o:?}"
            ),
            _ => assert!(matches!(&o, Outcome::Rejected { .. }), "{o:?}"),
        }
        assert!(
            !node.root().join("etc/redis/broken").exists(),
            "rolled back"
        );
        let v = drift(&r).await;
        assert_eq!(v["drift"], true, "{v}");
        assert_eq!(
            v["status"],
            if attempt < 3 { "failed" } else { "rejected" },
            "{v}"
        );
        assert_eq!(v["outdated"][0]["module"], "my-redis", "{v}");
    }
    // Out of retries: not tried again until the desired state changes.
    assert_eq!(agent.apply_once().await.unwrap(), Outcome::Unchanged);
    let st: serde_json::Value =
        serde_json::from_slice(&node.cli(&["status", "--format", "json"]).stdout).unwrap();
    assert_eq!(st["current"], 1, "{st}");
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_states_and_unreachable_receivers_change_nothing() {
    let db = sqlite().await;
    let (r, _reg, _k, node, _sources) = setup(&db, false).await;
    // Another key pinned: the desired state is refused, nothing is applied.
    let other = tempfile::tempdir().unwrap();
    let (_, pem) = powernode_module::trust::keys::generate(b"x").unwrap();
    fs::write(other.path().join("other.pub"), pem).unwrap();
    let mut wrong = node.opts.clone();
    wrong.receiver_key = vec![other.path().join("other.pub")];
    let o = wrong.agent().unwrap().apply_once().await.unwrap();
    assert!(
        matches!(&o, Outcome::Rejected { reason } if reason.contains("signature")),
        "{o:?}"
    );
    assert!(!node.root().join("etc/redis/redis.conf").exists());

    // The receiver unreachable: an error, nothing half-applied; then it completes.
    let mut away = node.opts.clone();
    away.receiver = Some("http://127.0.0.1:9".into());
    assert!(away.agent().unwrap().apply_once().await.is_err());
    assert!(!node.dir.path().join("state/current").exists());
    assert_eq!(
        node.opts.agent().unwrap().apply_once().await.unwrap(),
        Outcome::Applied { generation: 1 }
    );
    assert_eq!(drift(&r).await["drift"], false);

    // A report that cannot be sent is kept, retried after a backoff, and sent by a later
    // run once the receiver is back.
    let (_, inst) = r.get("/api/v1/instances/node-1", Some(READ_TOKEN)).await;
    let late: module_agent::receiver::Report = serde_json::from_value(json!({
        "desired_state_id": inst["instance"]["desired_state_id"],
        "running_module_digests": inst["instance"]["running_module_digests"],
        "composefs_digest": inst["instance"]["composefs_digest"],
        "status": "applied",
        "message": "kept while the receiver was away",
    }))
    .unwrap();
    away.agent().unwrap().send(late).await;
    let pending = node.dir.path().join("state/pending-report.json");
    let mut kept: serde_json::Value = serde_json::from_slice(&fs::read(&pending).unwrap()).unwrap();
    assert_eq!(kept["attempts"], 1, "{kept}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        kept["next_at"].as_u64().unwrap() > now,
        "retried after a backoff, not at once: {kept}"
    );
    // Time passes (the backoff is over).
    kept["next_at"] = 0.into();
    fs::write(&pending, kept.to_string()).unwrap();
    assert_eq!(
        node.opts.agent().unwrap().apply_once().await.unwrap(),
        Outcome::Unchanged
    );
    assert!(!pending.exists(), "sent");
    let (_, inst) = r.get("/api/v1/instances/node-1", Some(READ_TOKEN)).await;
    assert_eq!(
        inst["instance"]["message"], "kept while the receiver was away",
        "{inst}"
    );
}

/// A registry that serves other bytes than the signed digest: refused with the reason, the
/// active generation untouched; the objects of the good modules are kept and not fetched
/// again.
#[tokio::test(flavor = "multi_thread")]
async fn a_blob_that_does_not_match_its_digest_is_refused() {
    let db = sqlite().await;
    let (r, reg, _k, node, _sources) = setup(&db, false).await;
    let (_, v) = r
        .get("/api/v1/versions/v-my-redis-0.1.0", Some(READ_TOKEN))
        .await;
    let blob = v["artifact_digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let path = reg.blob_file(&blob);
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.windows(9).position(|w| w == b"port 6379").unwrap();
    bytes[at + 5] = b'7';
    fs::write(&path, &bytes).unwrap();
    let o = node.opts.agent().unwrap().apply_once().await.unwrap();
    assert!(
        matches!(&o, Outcome::Failed { .. } | Outcome::Rejected { .. }),
        "{o:?}"
    );
    let reason = match &o {
        Outcome::Failed { reason } | Outcome::Rejected { reason } => reason.clone(),
        _ => unreachable!(),
    };
    assert!(
        reason.contains("my-redis") && reason.contains("digest"),
        "{reason}"
    );
    assert!(
        !node.dir.path().join("state/current").exists(),
        "nothing activated"
    );
    let v = drift(&r).await;
    assert_eq!(v["status"], "rejected", "{v}");
}

/// The registry down in the middle of a rollout: the apply fails with the reason, nothing is
/// half-applied, and the next run after it is back completes.
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_outage_leaves_the_active_generation_and_the_next_run_completes() {
    let db = sqlite().await;
    let (r, mut reg, k, node, sources) = setup(&db, false).await;
    let agent = node.opts.agent().unwrap();
    assert_eq!(
        agent.apply_once().await.unwrap(),
        Outcome::Applied { generation: 1 }
    );
    let redis = &sources[2];
    fs::write(
        redis.path().join("rootfs/etc/redis/extra.conf"),
        "maxclients 7\n",
    )
    .unwrap();
    release_live(&r, &reg, &k, redis.path(), "my-redis", "0.2.0").await;
    reg.stop();
    let o = agent.apply_once().await;
    assert!(
        matches!(&o, Ok(Outcome::Failed { .. }) | Err(_)),
        "a network failure, not an apply: {o:?}"
    );
    assert!(
        !node.root().join("etc/redis/extra.conf").exists(),
        "nothing half-applied"
    );
    let st: serde_json::Value =
        serde_json::from_slice(&node.cli(&["status", "--format", "json"]).stdout).unwrap();
    assert_eq!(st["current"], 1, "{st}");
    reg.restart();
    assert_eq!(
        agent.apply_once().await.unwrap(),
        Outcome::Applied { generation: 2 }
    );
    assert_eq!(
        fs::read_to_string(node.root().join("etc/redis/extra.conf")).unwrap(),
        "maxclients 7\n"
    );
    assert_eq!(drift(&r).await["drift"], false);
}

/// The signer policy in the desired state is not met by the module's signature (the
/// operator pinned another key after it was ingested): the agent refuses the module itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_module_whose_signature_does_not_meet_the_policy_is_refused() {
    let db = sqlite().await;
    let (_r, reg, k, node, _sources) = setup(&db, false).await;
    let other = keys();
    let policies = MODULES
        .iter()
        .map(|m| {
            let key = if *m == "my-redis" {
                other.public.clone()
            } else {
                k.public.clone()
            };
            key_policy(m, &repo(m), key)
        })
        .collect();
    let mut cfg = config(&db.url, &reg.host, policies);
    cfg.promotion.live = StagePolicy::default();
    let r2 = serve(cfg).await;
    let (s, v) = post(
        &r2,
        "/templates/edge/assignments",
        OPS_TOKEN,
        json!({"module_name": "my-redis", "requirement": "^0.1"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let mut opts = node.opts.clone();
    opts.receiver = Some(r2.url.clone());
    let o = opts.agent().unwrap().apply_once().await.unwrap();
    assert!(
        matches!(&o, Outcome::Rejected { reason } if reason.contains("my-redis: signature")),
        "{o:?}"
    );
    assert!(
        !node.dir.path().join("state/current").exists(),
        "nothing activated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn packages_are_refused_where_apt_cannot_install() {
    let db = sqlite().await;
    let (r, _reg, _k, node, _sources) = setup(&db, true).await;
    let o = node.opts.agent().unwrap().apply_once().await.unwrap();
    let Outcome::Rejected { reason } = &o else {
        panic!("{o:?}")
    };
    assert!(
        reason.contains("redis-server")
            && reason.contains("packages are installed only on the running system"),
        "{reason}"
    );
    assert!(!node.root().exists() || fs::read_dir(node.root()).unwrap().next().is_none());
    let v = drift(&r).await;
    assert_eq!(v["status"], "rejected", "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_already_on_the_root_are_kept_aside_and_put_back() {
    let db = sqlite().await;
    let (r, _reg, _k, node, _sources) = setup(&db, false).await;
    // A root that already has the files a base system has, and a directory of its own.
    let etc = node.root().join("etc");
    fs::create_dir_all(etc.join("ssh")).unwrap();
    fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::write(etc.join("hostname"), "before\n").unwrap();
    fs::write(etc.join("login.defs"), "UMASK 022\n").unwrap();
    fs::set_permissions(etc.join("login.defs"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink_file("hosts", &etc.join("hosts.alias"));
    let before = snapshot(node.root().as_path());

    let agent = node.opts.agent().unwrap();
    assert!(matches!(
        agent.apply_once().await.unwrap(),
        Outcome::Applied { .. }
    ));
    assert_ne!(
        fs::read_to_string(etc.join("hostname")).unwrap(),
        "before\n"
    );
    let kept = node.dir.path().join("state/backup/etc/hostname");
    assert_eq!(fs::read_to_string(kept).unwrap(), "before\n", "kept aside");

    // Unassigning empties the state: every path is released, every original put back.
    let (s, v, _) = common::fleet::call(
        &r,
        reqwest::Method::DELETE,
        "/templates/edge/assignments/my-redis",
        OPS_TOKEN,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(matches!(
        agent.apply_once().await.unwrap(),
        Outcome::Applied { .. }
    ));
    assert_eq!(
        snapshot(node.root().as_path()),
        before,
        "the root as it was"
    );
}

fn symlink_file(target: &str, at: &Path) {
    std::os::unix::fs::symlink(target, at).unwrap();
}
