//! schemathesis, a third-party API fuzzer, against the OpenAPI document of a live receiver:
//! no 5xx, every answer matching its documented schema and status, every refused call a 4xx
//! with `{error, message}`, authentication checked before anything else.

mod common;
use common::*;
use module_webhook::store::Lifecycle;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The test venv's schemathesis (scripts/test creates it), or `SCHEMATHESIS`.
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("SCHEMATHESIS") {
        return p.into();
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/st-venv/bin/schemathesis");
    assert!(
        p.exists(),
        "schemathesis is needed for this test: python3 -m venv target/st-venv && \
         target/st-venv/bin/pip install \"schemathesis==4.32.*\" (scripts/test does this), or \
         set SCHEMATHESIS"
    );
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_holds_for_every_answer() {
    let st = schemathesis();
    let db = sqlite().await;
    let r = serve(config(&db.url, "127.0.0.1:1", vec![])).await;
    // Something to find: a template and a draft version.
    let (s, text) = r
        .post(
            "/api/v1/templates",
            serde_json::to_vec(&serde_json::json!({"id": "edge", "platform": "x86_64"})).unwrap(),
            &[
                ("Authorization".into(), format!("Bearer {OPS_TOKEN}")),
                ("Content-Type".into(), "application/json".into()),
            ],
        )
        .await;
    assert_eq!(s, 201, "{text}");
    published(&r, "0.1.0", Lifecycle::Draft, "ab", "0123456789abcdef").await;

    let work = tempfile::tempdir().unwrap(); // schemathesis keeps its example database here
    let o = Command::new(&st)
        .arg("--config-file")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", r.url))
        .args(["--url", &r.url])
        .args(["-H", &format!("Authorization: Bearer {OPS_TOKEN}")])
        // Every check runs (schemathesis' default); an explicit `--checks` would override
        // the one per-operation exception the configuration file makes.
        .args(["--max-examples", "40", "--seed", "1", "--no-color"])
        .current_dir(work.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "schemathesis found failures:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("Tested: 31"),
        "every operation was exercised:\n{out}"
    );
}
