//! A generation follows the signed index exactly, setuid and setgid bits included (the
//! policy: modules may ship them, as Debian packages do; a signed module that could plant a
//! setuid binary could as well plant a root unit), and `module-agent verify` checks modes and
//! owners, not only contents.

#[path = "../../webhook/tests/common/mod.rs"]
mod common;
mod support;
use common::{fleet::*, *};
use module_agent::apply::Outcome;
use std::{fs, os::unix::fs::PermissionsExt};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_setuid_file_lands_setuid_and_verify_checks_modes() {
    let db = sqlite().await;
    let (r, reg, k, node, sources) = setup(&db, false).await;
    let agent = node.opts.agent().unwrap();
    assert!(matches!(
        agent.apply_once().await.unwrap(),
        Outcome::Applied { .. }
    ));

    // my-redis 0.2.0 ships a helper that must run setuid root.
    let src = sources[2].path();
    fs::create_dir_all(src.join("rootfs/usr/local/bin")).unwrap();
    fs::write(
        src.join("rootfs/usr/local/bin/redis-check"),
        "#!/bin/sh\n# checks redis as root, whoever runs it (a setuid helper of the test)\n",
    )
    .unwrap();
    let manifest = fs::read_to_string(src.join("manifest.yaml"))
        .unwrap()
        .replace("  include:\n", "  include:\n    - \"/usr/local/bin/*\"\n");
    fs::write(
        src.join("manifest.yaml"),
        format!("{manifest}modes:\n  \"/usr/local/bin/redis-check\": \"4755\"\n"),
    )
    .unwrap();
    release_live(&r, &reg, &k, src, "my-redis", "0.2.0").await;
    let Outcome::Applied { generation } = agent.apply_once().await.unwrap() else {
        panic!("not applied")
    };

    let helper = node.dir.path().join(format!(
        "state/generations/{generation}/tree/usr/local/bin/redis-check"
    ));
    let mode = fs::metadata(&helper).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o4755, "the setuid bit survives the owner change");
    let o = node.cli(&["verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let o = node.cli(&["verify"]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains("TAMPERED /usr/local/bin/redis-check: mode 0755, expected 4755"),
        "{said}"
    );
}
