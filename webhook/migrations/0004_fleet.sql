-- The fleet: templates with assigned modules, each template's signed desired state, the
-- instances built from templates and what they last reported.

CREATE TABLE templates (
    id TEXT PRIMARY KEY,
    platform TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A module assigned to a template, optionally narrowed by a SemVer requirement (`^1`).
CREATE TABLE assignments (
    template_id TEXT NOT NULL,
    module TEXT NOT NULL,
    requirement TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (template_id, module)
);

-- The desired state each template serves: only ever replaced by a recomputation without
-- conflicts (fail safe). `envelope` is the signed DSSE envelope as served.
CREATE TABLE desired_states (
    template_id TEXT PRIMARY KEY,
    state_id TEXT NOT NULL,
    document TEXT NOT NULL,
    envelope TEXT NOT NULL,
    computed_at BIGINT NOT NULL
);

-- The outcome of the latest recomputation of each template, served or not: its findings,
-- and whether they blocked it from replacing the served state.
CREATE TABLE template_findings (
    template_id TEXT PRIMARY KEY,
    blocked BIGINT NOT NULL,
    findings TEXT NOT NULL,
    candidate_state_id TEXT,
    computed_at BIGINT NOT NULL
);

-- Instances authenticate with a token shown once at registration; only its SHA-256 is kept.
-- The last report is kept on the row: drift compares it with the served desired state.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    template_id TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_report_at BIGINT,
    reported_state_id TEXT,
    running_module_digests TEXT,
    composefs_digest TEXT,
    status TEXT,
    message TEXT
);
CREATE INDEX instances_template ON instances (template_id, id);

-- Fleet changes are audited too; their rows name the template.
ALTER TABLE audit ADD COLUMN template_id TEXT;
CREATE INDEX audit_template ON audit (template_id, seq);
