-- One schema for SQLite and PostgreSQL: portable types only (TEXT, BIGINT), ids are text,
-- times are Unix milliseconds. The audit table is append-only: no code path updates or
-- deletes its rows.

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    run_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX jobs_queued_dedupe ON jobs (dedupe_key) WHERE state = 'queued';
CREATE INDEX jobs_ready ON jobs (state, run_at);

CREATE TABLE modules (
    name TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE versions (
    id TEXT PRIMARY KEY,
    module TEXT NOT NULL,
    version TEXT NOT NULL,
    lifecycle TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    artifact_digest TEXT,
    composefs_digest TEXT,
    composefs_format BIGINT,
    source_repository TEXT,
    source_commit TEXT,
    signer_identity TEXT,
    signer_issuer TEXT,
    file_index TEXT,
    manifest TEXT,
    reject_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (module, version)
);
CREATE INDEX versions_digest ON versions (manifest_digest);

CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    version_id TEXT,
    module TEXT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    via TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    reason TEXT,
    evidence TEXT
);
CREATE INDEX audit_version ON audit (version_id, seq);

CREATE TABLE trust_pins (
    module TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    issuer TEXT NOT NULL,
    pinned_at BIGINT NOT NULL,
    version_id TEXT NOT NULL
);
