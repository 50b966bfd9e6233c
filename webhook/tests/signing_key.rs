//! The receiver's signing key (issue 25): one configured key for every replica, recorded in
//! the database so a replica started with another refuses to start (naming both key ids);
//! a rotation signs every served state with the old and the new key, then with the new one
//! alone; `/signing-key` serves the current key, `/signing-keys` all of them.
//! The node's side of the rotation is agent/tests/key_rotation.rs.

mod common;
use common::{fleet::*, *};
use module_webhook::{app::App, config::Config, fleet::key::ReceiverKey};
use powernode_module::desired_state::{self, Envelope, TrustedKey, key_id};
use rstest::rstest;
use serde_json::json;
use std::{fs, os::unix::fs::PermissionsExt, path::Path};

fn replica(db: &TestDb, data: &Path, current: Option<&Path>, next: Option<&Path>) -> Config {
    let mut c = config(&db.url, "127.0.0.1:9", vec![]);
    c.data_dir = data.to_owned();
    c.fleet.signing_key = current.map(Path::to_owned);
    c.fleet.next_signing_key = next.map(Path::to_owned);
    c
}

async fn refused(cfg: Config) -> String {
    let err = App::new(cfg)
        .await
        .expect_err("the replica refuses to start");
    format!("{err:#}")
}

#[rstest]
#[tokio::test]
async fn a_replica_with_other_keys_refuses_to_start_naming_both(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Unconfigured: each data directory makes a key of its own; the second replica
    // can tell and refuses.
    let first = App::new(replica(&db, a.path(), None, None)).await.unwrap();
    let generated = first.state.fleet.keys.current.keyid.clone();
    let err = refused(replica(&db, b.path(), None, None)).await;
    let other = ReceiverKey::load_or_create(b.path()).unwrap().keyid;
    assert_ne!(generated, other);
    assert!(
        err.contains(&generated) && err.contains(&other) && err.contains("signing_key"),
        "{}: {err}",
        db.name
    );

    // Moving to a configured key is a rotation: both, then the configured one alone.
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = signing_key(keys.path(), "receiver.pem");
    App::new(replica(&db, a.path(), None, Some(&key)))
        .await
        .unwrap();
    let r = App::new(replica(&db, a.path(), Some(&key), None))
        .await
        .unwrap();
    assert_eq!(r.state.fleet.keys.current.keyid, key_id(&public));
    // Every replica with the configured key starts, whatever its data directory.
    App::new(replica(&db, b.path(), Some(&key), None))
        .await
        .unwrap();
    let err = refused(replica(&db, a.path(), None, None)).await;
    assert!(
        err.contains(&generated) && err.contains(&key_id(&public)),
        "{err}"
    );
    let (stranger, stranger_pub) = signing_key(keys.path(), "stranger.pem");
    let err = refused(replica(&db, b.path(), Some(&stranger), None)).await;
    assert!(
        err.contains(&key_id(&stranger_pub))
            && err.contains(&key_id(&public))
            && err.contains("rotating-the-receiver-key.md"),
        "{err}"
    );

    // A configured key others can read is refused, naming the setting.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = refused(replica(&db, b.path(), Some(&key), None)).await;
    assert!(
        err.contains("fleet.signing_key") && err.contains("chmod 600"),
        "{err}"
    );
    let err = refused(replica(
        &db,
        b.path(),
        Some(&keys.path().join("none")),
        None,
    ))
    .await;
    assert!(err.contains("fleet.signing_key"), "{err}");
}

async fn served(r: &Running) -> (Envelope, Vec<String>) {
    let (s, v) = r
        .get("/api/v1/templates/edge/desired-state", Some(READ_TOKEN))
        .await;
    assert_eq!(s, 200, "{v}");
    let env: Envelope = serde_json::from_value(v).unwrap();
    let ids = env.signatures.iter().map(|s| s.keyid.clone()).collect();
    (env, ids)
}

#[rstest]
#[tokio::test]
async fn a_rotation_signs_with_both_keys_then_the_new_one_alone(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = backend.db().await;
    let keys = tempfile::tempdir().unwrap();
    let (old, old_pub) = signing_key(keys.path(), "old.pem");
    let (new, new_pub) = signing_key(keys.path(), "new.pem");
    let trust = |pem: &str| vec![TrustedKey::from_pem(pem).unwrap()];
    let data = tempfile::tempdir().unwrap();
    let r1 = serve(replica(&db, data.path(), Some(&old), None)).await;
    let (s, v) = post(
        &r1,
        "/templates",
        OPS_TOKEN,
        json!({"id": "edge", "platform": "p"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, ids) = served(&r1).await;
    assert_eq!(ids, [key_id(&old_pub)], "{}", db.name);
    assert_eq!(
        r1.get("/api/v1/signing-key", None).await.1,
        old_pub.as_str()
    );

    // The overlap: the served state is signed again, by both; /signing-key stays the
    // current key, /signing-keys lists both.
    let r2 = serve(replica(&db, data.path(), Some(&old), Some(&new))).await;
    let (env, ids) = served(&r2).await;
    assert_eq!(ids, [key_id(&old_pub), key_id(&new_pub)]);
    let (doc, id) = desired_state::verify_trusted(&env, &trust(&old_pub)).unwrap();
    assert_eq!(
        desired_state::verify_trusted(&env, &trust(&new_pub))
            .unwrap()
            .1,
        id
    );
    assert_eq!(
        r2.get("/api/v1/signing-key", None).await.1,
        old_pub.as_str()
    );
    let (s, v) = r2.get("/api/v1/signing-keys", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"keys": [
            {"keyid": key_id(&old_pub), "role": "current", "public_key": old_pub},
            {"keyid": key_id(&new_pub), "role": "next", "public_key": new_pub},
        ]})
    );
    // The replica still on the old key alone (a rolling restart) does not sign it back.
    let (_, ids) = served(&r1).await;
    assert_eq!(ids, [key_id(&old_pub), key_id(&new_pub)]);

    // The new key alone: the state is signed again, by it alone, at a higher sequence.
    let r3 = serve(replica(&db, data.path(), Some(&new), None)).await;
    let (env, ids) = served(&r3).await;
    assert_eq!(ids, [key_id(&new_pub)]);
    let (last, _) = desired_state::verify_trusted(&env, &trust(&new_pub)).unwrap();
    assert!(last.sequence > doc.sequence);
    assert_eq!(last.content_id(), doc.content_id());
    assert!(matches!(
        desired_state::verify_trusted(&env, &trust(&old_pub)),
        Err(desired_state::EnvelopeError::UntrustedKey { .. })
    ));
    assert_eq!(
        r3.get("/api/v1/signing-key", None).await.1,
        new_pub.as_str()
    );
    let (_, again) = served(&r1).await;
    assert_eq!(
        again,
        [key_id(&new_pub)],
        "no replica takes turns re-signing"
    );
}

#[test]
fn a_key_made_as_the_example_configuration_says_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receiver-key.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&path)
        .status();
    assert!(
        made.is_ok_and(|s| s.success()),
        "this test makes a key with openssl: apt-get install -y openssl (scripts/test does)"
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let k = ReceiverKey::from_file(&path, "fleet.signing_key").unwrap();
    assert_eq!(k.keyid, key_id(&k.public_pem));
}
