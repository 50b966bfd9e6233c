-- Promotion requests that wait for their requirements (approvals, checks, soak).
CREATE TABLE promotion_requests (
    id TEXT PRIMARY KEY,
    version_id TEXT NOT NULL,
    to_state TEXT NOT NULL,
    digest TEXT NOT NULL,
    requester TEXT NOT NULL,
    via TEXT NOT NULL,
    repository TEXT,
    pr_number BIGINT,
    state TEXT NOT NULL,
    missing TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX promotion_requests_open ON promotion_requests (state, version_id);
