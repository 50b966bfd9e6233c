//! A correctly signed state is not enough (issue 25): the agent pins its template, keeps
//! the highest sequence it applied and refuses a replayed older state (a downgrade back to
//! what was yanked), another template's state and an expired one, reporting why. The stale
//! states are served by a tiny HTTP server standing in for a receiver (or a man in the
//! middle) that replays what it saved.

#[path = "../../webhook/tests/common/mod.rs"]
mod common;
mod support;
use common::{fleet::*, *};
use module_agent::{apply::Outcome, cli::Opts};
use powernode_module::desired_state::{self, DesiredState, Envelope};
use powernode_testkit::http::{Response, Server};
use serde_json::{Value, json};
use std::fs;
use support::setup;

async fn envelope_of(r: &Running, template: &str) -> Value {
    let (s, v) = r
        .get(
            &format!("/api/v1/templates/{template}/desired-state"),
            Some(READ_TOKEN),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// A receiver that answers every desired-state read with `envelope` and takes reports.
fn replaying(envelope: Value) -> Server {
    Server::start(move |req| {
        if req.method == "GET" {
            Response::json(200, &envelope)
        } else {
            Response::json(200, &json!({}))
        }
    })
}

fn at(opts: &Opts, server: &Server) -> Opts {
    Opts {
        receiver: Some(server.url.clone()),
        ..opts.clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_foreign_and_expired_states_are_refused() {
    let db = sqlite().await;
    let (r, reg, k, node, sources) = setup(&db, false).await;
    template_with(&r, "core", &["system-base"]).await;
    let (opts, dir) = (node.opts.clone(), &node.dir);
    let agent = opts.agent().unwrap();
    let old = envelope_of(&r, "edge").await;
    assert_eq!(
        agent.apply_once().await.unwrap(),
        Outcome::Applied { generation: 1 }
    );
    let pin = agent.pin().unwrap();
    assert_eq!(pin.template, "edge", "pinned on the first state applied");

    // my-redis 0.2.0 goes live and is applied; 0.1.0 is yanked.
    let conf = dir.path().join("root/etc/redis/redis.conf");
    fs::write(
        sources[2].path().join("rootfs/etc/redis/redis.conf"),
        "port 6380\n",
    )
    .unwrap();
    release_live(&r, &reg, &k, sources[2].path(), "my-redis", "0.2.0").await;
    assert_eq!(
        agent.apply_once().await.unwrap(),
        Outcome::Applied { generation: 2 }
    );
    assert!(agent.pin().unwrap().sequence > pin.sequence);
    let (s, v) = post(
        &r,
        "/versions/v-my-redis-0.1.0/yank",
        OPS_TOKEN,
        json!({"reason": "CVE"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // The saved first state, replayed: correctly signed, but older. Refused, reported.
    let replay = replaying(old);
    let o = opts_agent(&at(&opts, &replay)).apply_once().await.unwrap();
    assert!(
        matches!(&o, Outcome::Rejected { reason } if reason.contains("replay or downgrade")),
        "{o:?}"
    );
    assert_eq!(fs::read_to_string(&conf).unwrap(), "port 6380\n");
    let report = replay
        .requests()
        .into_iter()
        .find(|q| q.method == "POST")
        .expect("the refusal is reported");
    let report: Value = serde_json::from_slice(&report.body).unwrap();
    assert_eq!(report["status"], "rejected", "{report}");

    // Another template's state, correctly signed: refused.
    let foreign = replaying(envelope_of(&r, "core").await);
    let o = opts_agent(&at(&opts, &foreign)).apply_once().await.unwrap();
    assert!(
        matches!(&o, Outcome::Rejected { reason } if reason.contains("pinned to \"edge\"")),
        "{o:?}"
    );
    // Pinned by configuration, before any state was applied: the same.
    let fresh = tempfile::tempdir().unwrap();
    let configured = Opts {
        template: Some("core".into()),
        state_dir: Some(fresh.path().join("state")),
        root: Some(fresh.path().join("root")),
        ..opts.clone()
    };
    let o = configured.agent().unwrap().apply_once().await.unwrap();
    assert!(
        matches!(&o, Outcome::Rejected { reason } if reason.contains("pinned to \"core\"")),
        "{o:?}"
    );

    // An expired state, signed by the receiver's own key with the next sequence: refused.
    let token = fs::read_to_string(dir.path().join("token")).unwrap();
    let (_, current) = signed_state_of(&r, "node-1", &token).await;
    let expired = DesiredState {
        sequence: current.sequence + 10,
        issued_at: 1,
        expires_at: 2,
        ..current
    };
    let key = &r.app.state.fleet.keys.current;
    let (env, _) = desired_state::sign(&expired, &key.signer, &key.public_pem).unwrap();
    let late = replaying(serde_json::to_value::<Envelope>(env).unwrap());
    let o = opts_agent(&at(&opts, &late)).apply_once().await.unwrap();
    assert!(
        matches!(&o, Outcome::Rejected { reason } if reason.contains("expired")),
        "{o:?}"
    );
    assert_eq!(fs::read_to_string(&conf).unwrap(), "port 6380\n");

    // The real receiver again: nothing was lost, nothing moved back.
    assert_eq!(agent.apply_once().await.unwrap(), Outcome::Unchanged);
    assert_eq!(fs::read_to_string(&conf).unwrap(), "port 6380\n");

    // A signed hold: nothing is applied or removed, and the pin moves up to it.
    let (_, current) = signed_state_of(&r, "node-1", &token).await;
    let hold = DesiredState {
        sequence: current.sequence + 20,
        hold: Some("nothing composes".into()),
        modules: Vec::new(),
        ..current
    };
    let (env, id) = desired_state::sign(&hold, &key.signer, &key.public_pem).unwrap();
    let held = replaying(serde_json::to_value::<Envelope>(env).unwrap());
    let o = opts_agent(&at(&opts, &held)).apply_once().await.unwrap();
    assert!(
        matches!(&o, Outcome::Held { reason } if reason.contains("nothing composes")),
        "{o:?}"
    );
    assert_eq!(fs::read_to_string(&conf).unwrap(), "port 6380\n");
    assert_eq!(agent.pin().unwrap().state_id, id.to_string());
}

fn opts_agent(o: &Opts) -> module_agent::apply::Agent {
    o.agent().unwrap()
}
