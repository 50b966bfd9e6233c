-- The web console (webhook/src/web/). Sessions live in the database, so every replica
-- knows them and a restart keeps them; only the SHA-256 of a session id is stored (a copy
-- of the table opens no session). `token_sha256` is the SHA-256 of the API token the
-- session was opened with: a session ends when that token leaves the configuration.
CREATE TABLE web_sessions (
    id_sha256 TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- What the console's charts draw: counts sampled at regular times. `series` is `drift` (the
-- fleet by drift state) or `adoption:<module>` (instances running each version of a module);
-- `label` the drift state or the version. One row per (series, time, label): replicas
-- sampling the same period write it once.
CREATE TABLE fleet_samples (
    series TEXT NOT NULL,
    at BIGINT NOT NULL,
    label TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (series, at, label)
);
CREATE INDEX fleet_samples_at ON fleet_samples (at);

-- Which version runs at a reported digest (the console's instance page, the adoption samples)
-- and the yanked versions (every drift judgement): found by index, not by reading every
-- version row with its manifest and file index.
CREATE INDEX versions_composefs ON versions (composefs_digest);
CREATE INDEX versions_lifecycle ON versions (lifecycle);
