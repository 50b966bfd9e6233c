//! The receiver's signing key across replicas and over time (issue 25): replicas with data
//! directories of their own sign with the one configured key, so a node accepts states from
//! either; and a rotation (runbooks/rotating-the-receiver-key.md) through an overlap in which
//! every state carries both signatures leaves no node behind — except one whose keys were
//! never updated, which refuses the new key's states, says why, and recovers once updated.

#[path = "../../webhook/tests/common/mod.rs"]
mod common;
mod support;
use common::{fleet::*, *};
use module_agent::{apply::Outcome, cli::Opts};
use powernode_module::desired_state::key_id;
use serde_json::Value;
use std::{fs, path::Path};
use support::{Node, setup_with};

/// Another receiver process's worth of state on the same database: its own data directory,
/// keys as given.
async fn replica(
    r: &Running,
    data: &Path,
    current: &Path,
    next: Option<&Path>,
) -> anyhow::Result<Running> {
    let mut cfg = (*r.app.state.config).clone();
    cfg.data_dir = data.to_owned();
    cfg.fleet.signing_key = Some(current.to_owned());
    cfg.fleet.next_signing_key = next.map(Path::to_owned);
    module_webhook::app::App::new(cfg.clone()).await?;
    Ok(serve(cfg).await)
}

/// The keyids of the envelope `r` serves for template `edge`.
async fn signed_by(r: &Running) -> Vec<String> {
    let (s, v) = r
        .get("/api/v1/templates/edge/desired-state", Some(READ_TOKEN))
        .await;
    assert_eq!(s, 200, "{v}");
    v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keyid"].as_str().unwrap().to_owned())
        .collect()
}

fn at(opts: &Opts, r: &Running) -> Opts {
    Opts {
        receiver: Some(r.url.clone()),
        ..opts.clone()
    }
}

async fn apply(opts: &Opts) -> Outcome {
    opts.agent().unwrap().apply_once().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_with_separate_data_dirs_serve_states_one_node_accepts() {
    // Replicas share a database; on one host SQLite would be one receiver.
    let db = Backend::Postgres.db().await;
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = signing_key(keys.path(), "receiver.pem");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (r1, reg, k, node, sources) = setup_with(&db, false, |c| {
        c.data_dir = a.path().to_owned();
        c.fleet.signing_key = Some(key.clone());
    })
    .await;
    let r2 = replica(&r1, b.path(), &key, None).await.unwrap();
    for r in [&r1, &r2] {
        assert_eq!(r.get("/api/v1/signing-key", None).await.1, public.as_str());
    }
    assert!(
        !a.path().join("receiver-key.pem").exists() && !b.path().join("receiver-key.pem").exists(),
        "a configured key: no key of the data directory's own"
    );

    // r1 signed the first state; the node reads it through r2.
    assert_eq!(
        apply(&at(&node.opts, &r2)).await,
        Outcome::Applied { generation: 1 }
    );
    // r2 signs the next one; the node reads it through r1.
    fs::write(
        sources[2].path().join("rootfs/etc/redis/redis.conf"),
        "port 6380\n",
    )
    .unwrap();
    common::fleet::release_live(&r2, &reg, &k, sources[2].path(), "my-redis", "0.2.0").await;
    // r1 answers polls from its cache of served state ids, trusted for a second.
    let mut o = Outcome::Unchanged;
    for _ in 0..30 {
        o = apply(&at(&node.opts, &r1)).await;
        if o != Outcome::Unchanged {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(o, Outcome::Applied { generation: 2 });
    assert_eq!(
        fs::read_to_string(node.root().join("etc/redis/redis.conf")).unwrap(),
        "port 6380\n"
    );
    assert_eq!(support::drift(&r1).await["drift"], false);
}

/// A second node of template `edge` beside `node`, trusting the same key file(s).
async fn second_node(r: &Running, node: &Node, dir: &Path) -> Opts {
    let token = register(r, "node-2", "edge").await;
    fs::write(dir.join("token"), token).unwrap();
    Opts {
        instance: Some("node-2".into()),
        token_file: Some(dir.join("token")),
        root: Some(dir.join("root")),
        state_dir: Some(dir.join("state")),
        ..node.opts.clone()
    }
}

#[rstest::rstest]
#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_leaves_no_node_behind(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    rotate(&backend.db().await).await;
}

async fn rotate(db: &TestDb) {
    let keys = tempfile::tempdir().unwrap();
    let (old, old_pub) = signing_key(keys.path(), "old.pem");
    let (new, new_pub) = signing_key(keys.path(), "new.pem");
    let data = tempfile::tempdir().unwrap();
    let (r1, reg, k, node, sources) = setup_with(db, false, |c| {
        c.data_dir = data.path().to_owned();
        c.fleet.signing_key = Some(old.clone());
    })
    .await;
    let n2 = tempfile::tempdir().unwrap();
    let node2 = second_node(&r1, &node, n2.path()).await;
    assert_eq!(signed_by(&r1).await, [key_id(&old_pub)], "{}", db.name);
    for n in [&node.opts, &node2] {
        assert_eq!(apply(n).await, Outcome::Applied { generation: 1 });
    }

    // 1. The overlap: every replica gets next_signing_key; the served state is signed again,
    // with both keys, and nodes that trust only the old key apply it.
    let r2 = replica(&r1, data.path(), &old, Some(&new)).await.unwrap();
    let (_, listed) = r2.get("/api/v1/signing-keys", None).await;
    let listed: Vec<(Value, Value)> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["keyid"].clone(), k["role"].clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (key_id(&old_pub).into(), "current".into()),
            (key_id(&new_pub).into(), "next".into())
        ]
    );
    assert_eq!(signed_by(&r2).await, [key_id(&old_pub), key_id(&new_pub)]);
    assert_eq!(
        apply(&at(&node.opts, &r2)).await,
        Outcome::Applied { generation: 2 },
        "trusting the old key only"
    );

    // 2. The new public key reaches node-1 (node-2 is forgotten); the next state applies.
    let new_file = node.dir.path().join("receiver-new.pub");
    fs::write(&new_file, &new_pub).unwrap();
    let mut both = at(&node.opts, &r2);
    both.receiver_key.push(new_file);
    fs::write(
        sources[2].path().join("rootfs/etc/redis/redis.conf"),
        "port 6380\n",
    )
    .unwrap();
    common::fleet::release_live(&r2, &reg, &k, sources[2].path(), "my-redis", "0.2.0").await;
    assert_eq!(apply(&both).await, Outcome::Applied { generation: 3 });

    // 3. The new key alone: a replica still on the old key alone cannot start any more.
    let r3 = replica(&r1, data.path(), &new, None).await.unwrap();
    assert_eq!(
        r3.get("/api/v1/signing-key", None).await.1,
        new_pub.as_str()
    );
    assert_eq!(signed_by(&r3).await, [key_id(&new_pub)]);
    let err = replica(&r1, data.path(), &old, None)
        .await
        .err()
        .expect("a replica on the old key alone refuses to start")
        .to_string();
    assert!(
        err.contains(&key_id(&old_pub)) && err.contains(&key_id(&new_pub)),
        "{err}"
    );
    let both = at(&both, &r3);
    assert_eq!(apply(&both).await, Outcome::Applied { generation: 4 });

    // The node left behind refuses the new key's state, says why, keeps what it runs...
    let behind = at(&node2, &r3);
    let conf = n2.path().join("root/etc/redis/redis.conf");
    let before = fs::read_to_string(&conf).unwrap();
    let o = apply(&behind).await;
    let Outcome::Rejected { reason } = &o else {
        panic!("{o:?}")
    };
    assert!(
        reason.contains(&key_id(&new_pub)) && reason.contains("signing-keys"),
        "{reason}"
    );
    assert_eq!(fs::read_to_string(&conf).unwrap(), before);
    let (s, v) = r3.get("/api/v1/instances/node-2", Some(READ_TOKEN)).await;
    assert_eq!(s, 200, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("\"rejected\"") && text.contains("signing-keys"),
        "the refusal is reported: {v}"
    );

    // ...until its keys are updated: one file holding both PEM blocks.
    let file = n2.path().join("receiver.pub");
    fs::write(&file, format!("{old_pub}\n{new_pub}")).unwrap();
    let fixed = Opts {
        receiver_key: vec![file],
        ..behind
    };
    assert!(matches!(apply(&fixed).await, Outcome::Applied { .. }));
    assert_eq!(fs::read_to_string(&conf).unwrap(), "port 6380\n");
}
