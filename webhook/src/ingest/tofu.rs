//! Trust on first use, for keyless modules configured without an identity. Off unless a
//! module's entry sets `trust_on_first_use = true` (pinned at once) or `"confirm"` (proposed,
//! and pinned when an operator confirms it; see [`super::first_use`]).
//!
//! What is pinned is a *pattern*, derived from the first accepted identity: the same
//! workflow of the same repository at any tag (`…/release.yaml@refs/tags/[^@]+`), so the next
//! release's tag is not refused. Only an identity of the module's own Gitea repository may
//! establish the pin (a fork's workflow cannot win the first use), the choice never depends
//! on the order of signature layers (two different candidates are refused as ambiguous), and
//! pinning is atomic (see [`crate::store::Store::claim_pin`]).

use super::rejection::Rejection;
use crate::store::{Pin, PinState};
use powernode_module::trust::verify::Verified;

/// Whether a certificate identity (a workflow URI `https://HOST/OWNER/REPO/…@REF`) names a
/// workflow of `repository` (`OWNER/REPO`).
pub fn belongs_to(identity: &str, repository: &str) -> bool {
    let Some(rest) = identity.strip_prefix("https://") else {
        return false;
    };
    let Some((_host, path)) = rest.split_once('/') else {
        return false;
    };
    let path = path.rsplit_once('@').map_or(path, |(p, _)| p);
    let Some(head) = path.get(..repository.len()) else {
        return false;
    };
    head.eq_ignore_ascii_case(repository)
        && matches!(path.as_bytes().get(repository.len()), None | Some(b'/'))
}

/// The pattern pinned for `identity`: any tag of the same workflow, or the exact identity
/// when it names no tag.
pub fn pattern_for(identity: &str) -> String {
    match identity.rsplit_once('@') {
        Some((base, r)) if r.starts_with("refs/tags/") => {
            format!("^{}@refs/tags/[^@]+$", regex::escape(base))
        }
        _ => format!("^{}$", regex::escape(identity)),
    }
}

fn matches(pin: &Pin, v: &Verified) -> bool {
    let (Some(id), Some(iss)) = (&v.identity, &v.issuer) else {
        return false;
    };
    iss == &pin.issuer && regex::Regex::new(&pin.identity_pattern).is_ok_and(|re| re.is_match(id))
}

/// The signature to accept under `pin`, if one matches it.
pub fn under_pin(pin: &Pin, verified: &[Verified]) -> Result<Verified, Rejection> {
    verified
        .iter()
        .find(|v| matches(pin, v))
        .cloned()
        .ok_or_else(|| {
            Rejection::SignerNotPinned(format!(
                "no signature by the identity pinned on first use ({}, pattern {}, issuer {})",
                pin.identity, pin.identity_pattern, pin.issuer
            ))
        })
}

/// With no pin yet: the one signature that may establish it, and the pin it proposes.
pub fn first_use(
    verified: &[Verified],
    repository: &str,
    version_id: &str,
) -> Result<(Verified, Pin), Rejection> {
    let mut candidates: Vec<(Verified, Pin)> = Vec::new();
    for v in verified {
        let (Some(id), Some(iss)) = (&v.identity, &v.issuer) else {
            continue;
        };
        if !belongs_to(id, repository) {
            continue;
        }
        let pin = Pin {
            identity: id.clone(),
            issuer: iss.clone(),
            identity_pattern: pattern_for(id),
            version_id: version_id.to_owned(),
            manifest_digest: None,
            pinned_at: 0,
            state: PinState::Confirmed,
            decided_by: None,
            decided_via: None,
            decided_at: None,
        };
        if !candidates
            .iter()
            .any(|(_, p)| (&p.identity_pattern, &p.issuer) == (&pin.identity_pattern, &pin.issuer))
        {
            candidates.push((v.clone(), pin));
        }
    }
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => Err(Rejection::SignerNotPinned(format!(
            "trust on first use: no signature by a workflow of {repository} may establish the pin"
        ))),
        _ => Err(Rejection::SignerNotPinned(format!(
            "trust on first use: signatures by several identities ({}); an operator must pin one in the configuration",
            candidates
                .iter()
                .map(|(_, p)| p.identity.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_of_the_repository() {
        let repo = "acct/modules/my-redis-module";
        assert!(belongs_to(
            "https://git.example.org/acct/modules/my-redis-module@refs/tags/v1",
            repo
        ));
        assert!(belongs_to(
            "https://git.example.org/acct/modules/my-redis-module/.gitea/workflows/release.yaml@refs/tags/v1.0.0",
            repo
        ));
        assert!(belongs_to(
            "https://git.example.org/ACCT/modules/my-redis-module",
            repo
        ));
        for other in [
            "https://git.example.org/acct/modules/my-redis-module-fork@refs/tags/v1",
            "https://git.example.org/mallory/fork@refs/tags/v1",
            "http://git.example.org/acct/modules/my-redis-module@refs/tags/v1",
            "mailto:acct/modules/my-redis-module",
            "https://git.example.org/acct/modules",
        ] {
            assert!(!belongs_to(other, repo), "{other}");
        }
    }

    #[test]
    fn the_pattern_admits_later_tags_of_the_same_workflow_only() {
        let p =
            pattern_for("https://g.example/acct/m/.gitea/workflows/release.yaml@refs/tags/v1.0.0");
        let re = regex::Regex::new(&p).unwrap();
        assert!(
            re.is_match("https://g.example/acct/m/.gitea/workflows/release.yaml@refs/tags/v1.0.1")
        );
        assert!(
            !re.is_match("https://g.example/acct/m/.gitea/workflows/other.yaml@refs/tags/v1.0.1")
        );
        assert!(
            !re.is_match("https://g.example/acct/m/.gitea/workflows/release.yaml@refs/heads/main")
        );
        assert!(
            !re.is_match("https://gXexample/acct/m/.gitea/workflows/release.yaml@refs/tags/v1")
        );
        let exact = pattern_for("https://g.example/acct/m@refs/heads/main");
        assert_eq!(exact, "^https://g\\.example/acct/m@refs/heads/main$");
    }
}
