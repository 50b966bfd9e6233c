//! Collection on the node: after each switch only `current`, `previous` and
//! `keep_generations` more stay, and only the objects they reference; what an interrupted
//! collection left is removed by the next one; the state directory stays bounded however
//! many versions go by.

#[path = "../../webhook/tests/common/mod.rs"]
mod common;
mod support;
use common::{fleet::*, *};
use module_agent::{apply::Outcome, gc, generation::Layout};
use std::{collections::BTreeSet, fs};
use support::*;

fn objects_on_disk(state: &std::path::Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for shard in fs::read_dir(state.join("objects")).unwrap().flatten() {
        let p = shard.file_name().to_string_lossy().into_owned();
        for f in fs::read_dir(shard.path()).unwrap().flatten() {
            out.insert(format!("{p}{}", f.file_name().to_string_lossy()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn old_generations_and_their_objects_are_collected() {
    let db = sqlite().await;
    let (r, reg, k, mut node, sources) = setup(&db, false).await;
    node.opts.keep_generations = Some(1);
    let agent = node.opts.agent().unwrap();
    let state = node.dir.path().join("state");
    let layout = Layout {
        state: state.clone(),
        root: node.root(),
    };
    assert!(matches!(
        agent.apply_once().await.unwrap(),
        Outcome::Applied { .. }
    ));
    let src = sources[2].path();
    let mut sizes = Vec::new();
    // GC_APPLIES=50 (bench/gc.sh) for the figure in the closing note; 6 in the suite.
    let applies: u32 = std::env::var("GC_APPLIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6);
    for i in 2..=applies + 1 {
        // A configuration big enough to be an object of its own (not inlined in the image).
        fs::write(
            src.join("rootfs/etc/redis/redis.conf"),
            format!(
                "port 6379\n# generation of the test, version {i}\n{}",
                "#\n".repeat(40)
            ),
        )
        .unwrap();
        release_live(&r, &reg, &k, src, "my-redis", &format!("0.{i}.0")).await;
        assert!(matches!(
            agent.apply_once().await.unwrap(),
            Outcome::Applied { .. }
        ));
        let gens = layout.list();
        assert!(gens.len() <= 3, "current, previous and one more: {gens:?}");
        let referenced: BTreeSet<String> = gens
            .iter()
            .flat_map(|n| layout.file_digests(*n))
            .map(|d| d.hex())
            .filter(|h| state.join("objects").join(&h[..2]).join(&h[2..]).exists())
            .collect();
        assert_eq!(
            objects_on_disk(&state),
            referenced,
            "exactly the objects kept generations reference"
        );
        sizes.push(gc::size_of(&state));
    }
    eprintln!("state directory after each of {applies} applies (bytes): {sizes:?}");
    // Flat once three generations exist: each apply adds a generation and removes one, and
    // nothing else accumulates (objects, verification records).
    let last = sizes[sizes.len() - 1];
    assert!(last <= sizes[2] + 512, "bounded: {sizes:?}");
    let records = fs::read_dir(state.join("verified")).unwrap().count();
    assert!(
        records <= 3 * 3,
        "verification records of kept generations only: {records}"
    );

    // A collection interrupted after its rename: the next one finishes it.
    let n = layout.list()[0];
    fs::rename(
        layout.generations().join(n.to_string()),
        layout.generations().join(format!(".deleting-{n}")),
    )
    .unwrap();
    let c = gc::collect(&layout, 1).unwrap();
    assert!(
        !layout.generations().join(format!(".deleting-{n}")).exists(),
        "{c:?}"
    );
    let o = node.cli(&["verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}
