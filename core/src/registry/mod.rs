//! OCI registry access for module artifacts and their signatures.
//!
//! Blobs stream from and to disk (memory does not grow with artifact size); manifests are
//! pushed as the exact bytes we serialised, so their digests are ours to compute and the
//! registry's serializer never touches signature annotations. Transient failures (5xx,
//! connection errors) are retried with backoff. Pushes go through `oci-client`; every read
//! (manifests, tag lists, tokens, blobs) goes through `read.rs`, which bounds every body.

pub mod artifact;
mod auth;
mod read;
mod retry;

pub use auth::{Credentials, resolve_credentials};
pub use read::{MAX_ERROR_BYTES, MAX_MANIFEST_BYTES, MAX_TAG_LIST_BYTES, MAX_TOKEN_BYTES};
pub use retry::retry;

use crate::digest::Digest;
use bytes::Bytes;
use oci_client::{
    Client, Reference, RegistryOperation,
    client::{ClientConfig, ClientProtocol},
    errors::OciDistributionError,
    secrets::RegistryAuth,
};
use std::path::Path;
use tokio::io::AsyncReadExt;

/// Media type of OCI image manifests (what module artifacts and signatures are).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI "empty" descriptor: config of artifacts that have none.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_BLOB: &[u8] = b"{}";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },
    #[error("{what} at {registry}: {source}")]
    Oci {
        what: String,
        registry: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The blob's download broke off (reset, closed early, timed out): always worth a retry,
    /// since what arrives is checked against its digest anyway.
    #[error("downloading blob {digest}: {source}")]
    Download {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    /// Writing the blob where the caller wanted it failed: the local disk, not the registry
    /// (e.g. the staging directory is full).
    #[error("writing blob {digest}: {source}")]
    Sink {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    /// A request of ours (`read.rs`) got no answer, or its answer broke off.
    #[error("{what} at {registry}: {source}")]
    Http {
        what: String,
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    /// The registry refused a read of ours; `message` is the start of its answer.
    #[error("{what}: {url} answered HTTP {status}: {message}")]
    Status {
        what: String,
        url: String,
        status: u16,
        message: String,
    },
    /// A body over its cap: refused by its `Content-Length` before any of it was read, or
    /// as soon as more than the cap had arrived. Never retried: the registry serves it so.
    #[error(
        "{what}: the registry sent more than {limit} bytes, the cap ({limit_name}){}; refusing \
         to read further",
        advertised.map(|n| format!(", advertising {n} bytes")).unwrap_or_default()
    )]
    TooLarge {
        what: String,
        limit: u64,
        limit_name: &'static str,
        advertised: Option<u64>,
    },
}

impl RegistryError {
    fn oci(what: impl Into<String>, r: &Reference, source: OciDistributionError) -> Self {
        RegistryError::Oci {
            what: what.into(),
            registry: r.resolve_registry().to_owned(),
            source,
        }
    }

    /// Whether retrying could help: server errors, timeouts, refused or reset connections.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Oci { source, .. } => is_transient(source),
            RegistryError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
            ),
            RegistryError::Download { .. } => true,
            RegistryError::Http { source, .. } => {
                source.is_connect()
                    || source.is_timeout()
                    || source.is_request()
                    || source.is_body()
            }
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            // A full disk or quota can be freed; a permission error needs an operator.
            RegistryError::Sink { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::QuotaExceeded
                    | std::io::ErrorKind::Interrupted
            ),
            _ => false,
        }
    }
}

fn is_transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::RequestError(r) => r.is_connect() || r.is_timeout() || r.is_request(),
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// Parses `HOST/REPO[:TAG|@DIGEST]`.
pub fn parse_reference(s: &str) -> Result<Reference, RegistryError> {
    s.parse::<Reference>()
        .map_err(|e| RegistryError::Reference {
            reference: s.to_owned(),
            reason: e.to_string(),
        })
}

/// Whether a registry host is on this machine, where plain HTTP is acceptable.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(registry)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A registry client for one registry host, with its credentials.
#[derive(Clone)]
pub struct Registry {
    /// Pushes only (every read is `reader`'s).
    client: Client,
    auth: RegistryAuth,
    registry: String,
    reader: read::Reader,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client for `reference`'s registry. Plain HTTP is used only for loopback hosts or
    /// when `insecure` is set; everything else is HTTPS.
    pub fn new(reference: &Reference, credentials: Credentials, insecure: bool) -> Self {
        let registry = reference.resolve_registry().to_owned();
        let plain = insecure || is_loopback(&registry);
        let protocol = if plain {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        };
        const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
        const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
        const USER_AGENT: &str = concat!("module-builder/", env!("CARGO_PKG_VERSION"));
        let config = ClientConfig {
            protocol,
            use_monolithic_push: true,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            ..Default::default()
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
            .unwrap_or_default();
        Registry {
            client: Client::new(config),
            auth: credentials.clone().into_auth(),
            registry,
            reader: read::Reader {
                http,
                scheme: if plain { "http" } else { "https" },
                credentials,
                tokens: Default::default(),
            },
        }
    }

    async fn authenticate(
        &self,
        r: &Reference,
        op: RegistryOperation,
    ) -> Result<(), RegistryError> {
        self.client
            .auth(r, &self.auth, op)
            .await
            .map(|_| ())
            .map_err(|e| RegistryError::oci("authenticating", r, e))
    }

    /// Whether the repository of `r` has the blob `digest`.
    pub async fn blob_exists(&self, r: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        self.authenticate(r, RegistryOperation::Push).await?;
        self.client
            .blob_exists(r, &digest.to_string())
            .await
            .map_err(|e| RegistryError::oci(format!("checking blob {digest}"), r, e))
    }

    /// Uploads a small in-memory blob unless the registry has it.
    pub async fn push_small_blob(
        &self,
        r: &Reference,
        data: &[u8],
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::of(data);
        retry("pushing blob", || async {
            if self.blob_exists(r, &digest).await? {
                return Ok(());
            }
            self.client
                .push_blob(r, Bytes::copy_from_slice(data), &digest.to_string())
                .await
                .map(|_| ())
                .map_err(|e| RegistryError::oci(format!("pushing blob {digest}"), r, e))
        })
        .await?;
        Ok(digest)
    }

    /// Streams a file up as a blob with a known digest and size, unless the registry has it.
    /// Returns whether it was uploaded (false: it was already there).
    pub async fn push_file_blob(
        &self,
        r: &Reference,
        path: &Path,
        digest: &Digest,
        size: u64,
        progress: impl Fn(u64) + Send + Sync + Clone + 'static,
    ) -> Result<bool, RegistryError> {
        retry("pushing blob", || {
            let progress = progress.clone();
            async move {
                if self.blob_exists(r, digest).await? {
                    return Ok(false);
                }
                let file = tokio::fs::File::open(path).await?;
                let stream = futures_util::stream::unfold(
                    (file, vec![0u8; 1 << 20], 0u64),
                    move |(mut f, mut buf, mut sent)| {
                        let progress = progress.clone();
                        async move {
                            match f.read(&mut buf).await {
                                Ok(0) => None,
                                Ok(n) => {
                                    sent += n as u64;
                                    progress(sent);
                                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                                    Some((Ok(chunk), (f, buf, sent)))
                                }
                                Err(e) => {
                                    Some((Err(OciDistributionError::IoError(e)), (f, buf, sent)))
                                }
                            }
                        }
                    },
                );
                self.client
                    .push_blob_stream(r, stream, &digest.to_string(), Some(size))
                    .await
                    .map_err(|e| {
                        RegistryError::oci(format!("uploading {}", path.display()), r, e)
                    })?;
                Ok(true)
            }
        })
        .await
    }

    /// Pushes manifest bytes exactly as given; returns their digest.
    pub async fn push_manifest(
        &self,
        r: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::of(bytes);
        let ct = reqwest::header::HeaderValue::from_str(media_type).map_err(|e| {
            RegistryError::Invalid {
                what: "media type".into(),
                message: e.to_string(),
            }
        })?;
        retry("pushing manifest", || async {
            self.authenticate(r, RegistryOperation::Push).await?;
            self.client
                .push_manifest_raw(r, Bytes::copy_from_slice(bytes), ct.clone())
                .await
                .map(|_| ())
                .map_err(|e| RegistryError::oci(format!("pushing manifest {r}"), r, e))
        })
        .await?;
        Ok(digest)
    }

    /// Fetches a manifest's raw bytes (at most [`MAX_MANIFEST_BYTES`]); `None` when the
    /// registry says it does not exist. Any other failure is an error: "could not ask" is
    /// never "not there".
    pub async fn fetch_manifest(
        &self,
        r: &Reference,
    ) -> Result<Option<(Vec<u8>, Digest)>, RegistryError> {
        let accept = [OCI_MANIFEST, "application/vnd.oci.image.index.v1+json"];
        let res = retry("fetching manifest", || self.reader.manifest(r, &accept)).await?;
        Ok(res.map(|b| {
            let d = Digest::of(&b);
            (b, d)
        }))
    }

    /// Resolves a tag to the digest of its manifest (by fetching and hashing the manifest).
    pub async fn resolve(&self, r: &Reference) -> Result<Option<Digest>, RegistryError> {
        Ok(self.fetch_manifest(r).await?.map(|(_, d)| d))
    }

    /// Downloads a blob of at most `max` bytes into memory, checking its digest.
    pub async fn pull_small_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        max: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let mut out = Vec::new();
        self.pull_blob_into(r, digest, max, &mut out).await?;
        Ok(out)
    }

    /// Streams a blob into `w`, refusing more than `max` bytes and checking the digest.
    pub async fn pull_blob_into<W: tokio::io::AsyncWrite + Unpin + Send>(
        &self,
        r: &Reference,
        digest: &Digest,
        max: u64,
        w: &mut W,
    ) -> Result<u64, RegistryError> {
        self.reader.blob_into(r, digest, max, w).await
    }

    /// Lists a repository's tags (one answer of at most [`MAX_TAG_LIST_BYTES`]).
    pub async fn list_tags(&self, r: &Reference) -> Result<Vec<String>, RegistryError> {
        retry("listing tags", || self.reader.tags(r)).await
    }
}

/// `reference` with its tag or digest replaced.
pub fn with_tag(r: &Reference, tag: &str) -> Reference {
    Reference::with_tag(
        r.registry().to_owned(),
        r.repository().to_owned(),
        tag.to_owned(),
    )
}

pub fn with_digest(r: &Reference, d: &Digest) -> Reference {
    Reference::with_digest(
        r.registry().to_owned(),
        r.repository().to_owned(),
        d.to_string(),
    )
}

/// `HOST/REPO` of a reference, as cosign puts it in `docker-reference`.
pub fn repository_name(r: &Reference) -> String {
    format!("{}/{}", r.resolve_registry(), r.repository())
}
