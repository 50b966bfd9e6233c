//! Everything read from a registry, read by us and bounded (ARCHITECTURE.md §5).
//!
//! `oci-client` reads manifests, tag lists, token answers and error bodies whole
//! (`Response::bytes`), so a registry that serves a 1.5 GiB manifest makes its reader hold
//! 1.5 GiB. Every pull-side request therefore goes through this module instead: a body is
//! refused when its `Content-Length` is over the cap, before any of it is read, and a body
//! without one (chunked) is read chunk by chunk and dropped as soon as it passes the cap.
//! `oci-client` is left with pushes only (the builder, to the registry its author pushes to).
//!
//! Authentication follows the distribution token flow: a `401` names a `Bearer` realm, whose
//! token (asked for with the credentials, if any) is cached per repository until it expires;
//! a `Basic` challenge gets the credentials themselves. Redirects (blob storage) are
//! followed by reqwest, which drops `Authorization` when the host changes.

use super::{Credentials, RegistryError};
use crate::digest::Digest;
use oci_client::Reference;
use reqwest::{Response, StatusCode, header};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::io::AsyncWriteExt;

/// Largest manifest read (artifact or signature manifest, image index): 4 MiB, the limit
/// distribution itself puts on a manifest it accepts. A module manifest is about 1 KiB; a
/// signature manifest grows by one layer (about 1 KiB with its annotations, a few KiB with a
/// certificate chain and bundle) per signature.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest tag list read: 4 MiB, over 30,000 tags of 128 characters (the longest a tag may
/// be); a module repository has one tag per version and one per signed version.
pub const MAX_TAG_LIST_BYTES: u64 = 4 << 20;
/// Largest answer of a token endpoint: 64 KiB (a registry token is a JWT of a few KiB).
pub const MAX_TOKEN_BYTES: u64 = 64 << 10;
/// How much of a refusal's body is read for its message: 16 KiB; the rest is not read.
pub const MAX_ERROR_BYTES: u64 = 16 << 10;

/// How a request to one repository is authorised, once the registry has said how.
#[derive(Clone)]
pub(super) enum Authz {
    Bearer { token: String, until: Instant },
    Basic,
}

/// Bearer tokens and `Basic` answers, by repository; shared by the clones of a `Registry`.
pub(super) type Tokens = Arc<Mutex<HashMap<String, Authz>>>;

/// The HTTP side of a `Registry`: our own reqwest client, its scheme and credentials.
#[derive(Clone)]
pub(super) struct Reader {
    pub(super) http: reqwest::Client,
    pub(super) scheme: &'static str,
    pub(super) credentials: Credentials,
    pub(super) tokens: Tokens,
}

/// Reads `res`'s body, refusing it by `Content-Length` before reading when that is over
/// `limit`, and as soon as more than `limit` bytes have arrived otherwise.
pub(super) async fn read_capped(
    mut res: Response,
    limit: u64,
    limit_name: &'static str,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = |advertised| RegistryError::TooLarge {
        what: what.to_owned(),
        limit,
        limit_name,
        advertised,
    };
    let advertised = res.content_length();
    if let Some(n) = advertised.filter(|n| *n > limit) {
        return Err(too_large(Some(n)));
    }
    let host = res.url().host_str().unwrap_or_default().to_owned();
    let mut out = Vec::with_capacity(advertised.unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = res.chunk().await.map_err(|source| RegistryError::Http {
        what: what.to_owned(),
        registry: host.clone(),
        source,
    })? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_large(None));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The start of a refusal's body (at most [`MAX_ERROR_BYTES`]), for its message.
async fn error_status(mut res: Response, what: &str) -> RegistryError {
    let status = res.status().as_u16();
    let url = res.url().to_string();
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        let room = MAX_ERROR_BYTES as usize - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() as u64 >= MAX_ERROR_BYTES {
            break;
        }
    }
    let message = String::from_utf8_lossy(&body).trim().to_owned();
    RegistryError::Status {
        what: what.to_owned(),
        url,
        status,
        message,
    }
}

impl Reader {
    fn base(&self, r: &Reference) -> String {
        format!(
            "{}://{}/v2/{}",
            self.scheme,
            r.resolve_registry(),
            r.repository()
        )
    }

    /// `GET url` in `r`'s repository, authorised as the registry asks (one challenge).
    async fn get(
        &self,
        r: &Reference,
        url: &str,
        accept: &str,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let repo = r.repository().to_owned();
        let mut challenged = false;
        loop {
            let mut req = self.http.get(url);
            if !accept.is_empty() {
                req = req.header(header::ACCEPT, accept);
            }
            let authz = self.tokens.lock().ok().and_then(|t| t.get(&repo).cloned());
            req = match (authz, &self.credentials) {
                (Some(Authz::Bearer { token, until }), _) if until > Instant::now() => {
                    req.bearer_auth(token)
                }
                (
                    Some(Authz::Basic),
                    Credentials::Basic {
                        username, password, ..
                    },
                ) => req.basic_auth(username, Some(password)),
                _ => req,
            };
            let res = req.send().await.map_err(|source| RegistryError::Http {
                what: what.to_owned(),
                registry: r.resolve_registry().to_owned(),
                source,
            })?;
            if res.status() != StatusCode::UNAUTHORIZED || challenged {
                return Ok(res);
            }
            let Some(challenge) = res
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
            else {
                return Ok(res);
            };
            drop(res);
            let authz = self.authorize(r, &challenge).await?;
            if let Ok(mut t) = self.tokens.lock() {
                t.insert(repo.clone(), authz);
            }
            challenged = true;
        }
    }

    /// Answers a `WWW-Authenticate` challenge for pulling from `r`'s repository.
    async fn authorize(&self, r: &Reference, challenge: &str) -> Result<Authz, RegistryError> {
        let Some(params) = bearer_params(challenge) else {
            return Ok(Authz::Basic);
        };
        let param = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let what = format!("asking for a token to pull {}", r.repository());
        let realm = param("realm").ok_or_else(|| RegistryError::Invalid {
            what: what.clone(),
            message: format!("the challenge {challenge:?} names no realm"),
        })?;
        let scope = format!("repository:{}:pull", r.repository());
        let mut query = vec![("scope", scope.as_str())];
        if let Some(s) = param("service") {
            query.push(("service", s));
        }
        let url =
            reqwest::Url::parse_with_params(realm, &query).map_err(|e| RegistryError::Invalid {
                what: what.clone(),
                message: format!("realm {realm:?}: {e}"),
            })?;
        let mut req = self.http.get(url);
        if let Credentials::Basic {
            username, password, ..
        } = &self.credentials
        {
            req = req.basic_auth(username, Some(password));
        }
        let res = req.send().await.map_err(|source| RegistryError::Http {
            what: what.clone(),
            registry: realm.to_owned(),
            source,
        })?;
        if res.status() != StatusCode::OK {
            return Err(error_status(res, &what).await);
        }
        let body = read_capped(res, MAX_TOKEN_BYTES, "MAX_TOKEN_BYTES", &what).await?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
            what: what.clone(),
            message: e.to_string(),
        })?;
        let token = t
            .token
            .or(t.access_token)
            .ok_or_else(|| RegistryError::Invalid {
                what,
                message: "the answer has neither `token` nor `access_token`".into(),
            })?;
        // The spec's default lifetime is 60 s; renew a little early.
        let secs = t.expires_in.unwrap_or(60).max(10) - 5;
        Ok(Authz::Bearer {
            token,
            until: Instant::now() + Duration::from_secs(secs),
        })
    }

    /// A manifest's bytes (at most [`MAX_MANIFEST_BYTES`]); `None` when the registry says
    /// there is no such manifest. A manifest asked for by digest must have that digest.
    pub(super) async fn manifest(
        &self,
        r: &Reference,
        accept: &[&str],
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let at = r.digest().or(r.tag()).unwrap_or("latest");
        let url = format!("{}/manifests/{at}", self.base(r));
        let what = format!("fetching manifest {r}");
        let res = self.get(r, &url, &accept.join(", "), &what).await?;
        if res.status() != StatusCode::OK {
            let e = error_status(res, &what).await;
            return if is_not_found(&e) { Ok(None) } else { Err(e) };
        }
        let body = read_capped(res, MAX_MANIFEST_BYTES, "MAX_MANIFEST_BYTES", &what).await?;
        if let Some(want) = r.digest() {
            let got = Digest::of(&body);
            if got.to_string() != want {
                return Err(RegistryError::Invalid {
                    what: format!("manifest {r}"),
                    message: format!("the registry served content with digest {got}"),
                });
            }
        }
        Ok(Some(body))
    }

    /// The repository's tags (one answer of at most [`MAX_TAG_LIST_BYTES`]).
    pub(super) async fn tags(&self, r: &Reference) -> Result<Vec<String>, RegistryError> {
        let url = format!("{}/tags/list", self.base(r));
        let what = format!("listing tags of {r}");
        let res = self.get(r, &url, "application/json", &what).await?;
        if res.status() != StatusCode::OK {
            return Err(error_status(res, &what).await);
        }
        let body = read_capped(res, MAX_TAG_LIST_BYTES, "MAX_TAG_LIST_BYTES", &what).await?;
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let list: TagList = serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
            what,
            message: e.to_string(),
        })?;
        Ok(list.tags.unwrap_or_default())
    }

    /// Streams the blob `digest` into `w`: at most `max` bytes (refused by `Content-Length`
    /// before reading), checked against the digest at the end. Returns its size.
    pub(super) async fn blob_into<W: tokio::io::AsyncWrite + Unpin + Send>(
        &self,
        r: &Reference,
        digest: &Digest,
        max: u64,
        w: &mut W,
    ) -> Result<u64, RegistryError> {
        use sha2::{Digest as _, Sha256};
        let d = digest.to_string();
        let url = format!("{}/blobs/{d}", self.base(r));
        let what = format!("fetching blob {digest}");
        let mut res = self.get(r, &url, "", &what).await?;
        if res.status() != StatusCode::OK {
            return Err(error_status(res, &what).await);
        }
        let too_large = |n: u64| RegistryError::Invalid {
            what: format!("blob {digest}"),
            message: format!("is {n} bytes or more, larger than the {max} bytes allowed"),
        };
        if let Some(n) = res.content_length().filter(|n| *n > max) {
            return Err(too_large(n));
        }
        let mut h = Sha256::new();
        let mut n = 0u64;
        loop {
            // A body that breaks off is worth a retry: what arrives is checked anyway.
            let chunk = res.chunk().await.map_err(|e| RegistryError::Download {
                digest: d.clone(),
                source: std::io::Error::other(e),
            })?;
            let Some(chunk) = chunk else { break };
            n += chunk.len() as u64;
            if n > max {
                return Err(too_large(n));
            }
            h.update(&chunk);
            w.write_all(&chunk)
                .await
                .map_err(|source| RegistryError::Sink {
                    digest: d.clone(),
                    source,
                })?;
        }
        w.flush().await.map_err(|source| RegistryError::Sink {
            digest: d.clone(),
            source,
        })?;
        let got = Digest::from_bytes(h.finalize().into());
        if &got != digest {
            return Err(RegistryError::Invalid {
                what: format!("blob {digest}"),
                message: format!("content has digest {got}"),
            });
        }
        Ok(n)
    }
}

/// Whether a refusal means "there is no such manifest/blob/repository".
fn is_not_found(e: &RegistryError) -> bool {
    match e {
        RegistryError::Status {
            status, message, ..
        } => {
            *status == 404
                || (*status >= 400
                    && *status < 500
                    && ["MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"]
                        .iter()
                        .any(|c| message.contains(c)))
        }
        _ => false,
    }
}

/// The parameters of a `Bearer` challenge (`Bearer realm="…",service="…"`); `None` for
/// any other scheme.
fn bearer_params(challenge: &str) -> Option<Vec<(String, String)>> {
    let (scheme, rest) = challenge.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::bearer_params;

    #[test]
    fn bearer_challenges() {
        let p = bearer_params(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[1], ("service".into(), "registry.example".into()));
        assert_eq!(p[2], ("scope".into(), "repository:a/b:pull".into()));
        let p = bearer_params(r#"bearer realm=https://a/t, service="x\"y""#).unwrap();
        assert_eq!(p[0].1, "https://a/t");
        assert_eq!(p[1].1, "x\"y");
        assert!(bearer_params(r#"Basic realm="registry""#).is_none());
    }
}
