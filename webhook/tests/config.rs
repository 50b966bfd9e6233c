//! The example configuration loads, and bad configurations fail naming the key.

use module_webhook::config::Config;
use std::path::Path;

#[test]
fn example_config_loads_and_env_overrides() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("module-webhook.example.toml");
    // The example's key file is relative; validation does not read keys.
    let c = Config::load(Some(&path)).unwrap();
    assert_eq!(c.registry.repositories, ["acct/modules/*"]);
    assert_eq!(c.modules[0].name, "my-redis");
    assert_eq!(c.ingest.workers, 2);
    assert_eq!(c.server.header_read_timeout_secs, 10);
    assert_eq!(c.server.max_connections, 4_096);
}

#[test]
fn invalid_configs_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    let write = |s: &str| std::fs::write(&p, s).unwrap();
    write(
        "listen = \"x\"\ndatabase_url = \"sqlite://x\"\n[registry]\nurl = \"http://127.0.0.1:1\"\nrepositories = []\n[hooks]\n",
    );
    let e = Config::load(Some(&p)).unwrap_err().to_string();
    assert!(e.contains("registry.repositories"), "{e}");
    write(
        "listen = \"x\"\ndatabase_url = \"sqlite://x\"\n[registry]\nurl = \"http://127.0.0.1:1\"\nrepositories = [\"a/*\"]\n[hooks]\n[[modules]]\nname = \"m\"\nrepository = \"a/m\"\n",
    );
    let e = Config::load(Some(&p)).unwrap_err().to_string();
    assert!(
        e.contains("modules[0]") && e.contains("pins no signer"),
        "{e}"
    );
    write(
        "listen = \"x\"\ndatabase_url = \"sqlite://x\"\nlisten_typo = 1\n[registry]\nurl = \"u\"\nrepositories = [\"a/*\"]\n[hooks]\n",
    );
    let e = Config::load(Some(&p)).unwrap_err().to_string();
    assert!(e.contains("listen_typo"), "{e}");
    write(
        "listen = \"x\"\ndatabase_url = \"sqlite://x\"\n[registry]\nurl = \"u\"\nrepositories = [\"a/*\"]\n[hooks]\n[server]\nheader_read_timeout_secs = 0\n",
    );
    let e = Config::load(Some(&p)).unwrap_err().to_string();
    assert!(e.contains("server.header_read_timeout_secs"), "{e}");
    let e = Config::load(Some(&dir.path().join("missing.toml")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
}
