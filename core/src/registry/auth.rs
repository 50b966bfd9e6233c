//! Registry credentials: explicit (flags or `REGISTRY_USERNAME`/`REGISTRY_PASSWORD`) first,
//! then docker's `config.json` (`auths`, `credHelpers`, `credsStore`), else anonymous.

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

/// Where credentials came from, for logs (never the secret itself).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic {
        username: String,
        password: String,
        source: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic {
                username, source, ..
            } => {
                write!(f, "Basic({username} from {source})")
            }
        }
    }
}

impl Credentials {
    pub fn into_auth(self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic {
                username, password, ..
            } => RegistryAuth::Basic(username, password),
        }
    }
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Resolves credentials for `registry` (a `host[:port]`).
///
/// `username`/`password` are the explicit values (flags, falling back to the
/// `REGISTRY_USERNAME`/`REGISTRY_PASSWORD` environment, resolved by the caller).
pub fn resolve_credentials(
    registry: &str,
    username: Option<String>,
    password: Option<String>,
) -> Result<Credentials, String> {
    match (username, password) {
        (Some(u), Some(p)) => {
            return Ok(Credentials::Basic {
                username: u,
                password: p,
                source: "flags/environment".into(),
            });
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err("give both a registry username and a password (or neither)".into());
        }
        (None, None) => {}
    }
    let Some(path) = docker_config_path() else {
        return Ok(Credentials::Anonymous);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::Anonymous),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let cfg: DockerConfig =
        serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    from_docker_config(&cfg, registry, &path.display().to_string())
}

fn from_docker_config(
    cfg: &DockerConfig,
    registry: &str,
    source: &str,
) -> Result<Credentials, String> {
    let keys = [
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
    ];
    if let Some(helper) = cfg.cred_helpers.get(registry) {
        return helper_get(helper, registry);
    }
    for k in &keys {
        if let Some(a) = cfg.auths.get(k) {
            if let (Some(u), Some(p)) = (&a.username, &a.password) {
                return Ok(basic(u, p, source));
            }
            if let Some(enc) = &a.auth {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(enc.trim())
                    .map_err(|e| format!("{source}: auth for {k} is not base64: {e}"))?;
                let s = String::from_utf8(raw)
                    .map_err(|_| format!("{source}: auth for {k} is not UTF-8"))?;
                let (u, p) = s
                    .split_once(':')
                    .ok_or_else(|| format!("{source}: auth for {k} is not user:password"))?;
                return Ok(basic(u, p, source));
            }
        }
    }
    if let Some(store) = &cfg.creds_store {
        return helper_get(store, registry);
    }
    Ok(Credentials::Anonymous)
}

fn basic(u: &str, p: &str, source: &str) -> Credentials {
    Credentials::Basic {
        username: u.to_owned(),
        password: p.to_owned(),
        source: source.to_owned(),
    }
}

/// Runs `docker-credential-<helper> get` with the registry on stdin.
fn helper_get(helper: &str, registry: &str) -> Result<Credentials, String> {
    let prog = format!("docker-credential-{helper}");
    let mut child = Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {prog}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("running {prog}: {e}"))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if msg.contains("credentials not found") {
            return Ok(Credentials::Anonymous);
        }
        return Err(format!("{prog} get failed: {msg}"));
    }
    #[derive(Deserialize)]
    struct HelperOut {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let h: HelperOut = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{prog} printed unexpected output: {e}"))?;
    Ok(basic(&h.username, &h.secret, &prog))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auths_and_helpers() {
        let cfg: DockerConfig = serde_json::from_str(
            r#"{"auths": {"reg.example.org": {"auth": "dXNlcjpwYXNz"}},
                "credHelpers": {"other.example.org": "nonexistent-helper-for-tests"}}"#,
        )
        .unwrap();
        assert_eq!(
            from_docker_config(&cfg, "reg.example.org", "cfg").unwrap(),
            basic("user", "pass", "cfg")
        );
        assert_eq!(
            from_docker_config(&cfg, "third.example.org", "cfg").unwrap(),
            Credentials::Anonymous
        );
        let err = from_docker_config(&cfg, "other.example.org", "cfg").unwrap_err();
        assert!(
            err.contains("docker-credential-nonexistent-helper-for-tests"),
            "{err}"
        );
        assert!(resolve_credentials("x", Some("u".into()), None).is_err());
    }
}
