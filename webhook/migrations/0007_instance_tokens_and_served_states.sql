-- Instance tokens can be rotated and instances deleted. Every replica keeps instance tokens
-- in memory (`fleet/cache.rs`) and re-reads this counter at most once a second; a rotation or
-- a deletion increments it in its own transaction, so every replica drops what it cached and
-- a revoked token stops working everywhere within a second.
CREATE TABLE instance_auth_epoch (
    id BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL
);
INSERT INTO instance_auth_epoch (id, epoch) VALUES (1, 0);

-- Every desired state a template has served to an instance (recorded when it is first sent
-- out), with how many modules it holds: a report may name only one of these states, and
-- list at most as many modules as the largest of them (plus a small slack).
CREATE TABLE served_states (
    template_id TEXT NOT NULL,
    state_id TEXT NOT NULL,
    modules BIGINT NOT NULL,
    served_at BIGINT NOT NULL,
    PRIMARY KEY (template_id, state_id)
);
-- The states served now count as served. Their module count, portably (SQLite and
-- PostgreSQL): each module of the document names one `manifest_digest`, nothing else does.
INSERT INTO served_states (template_id, state_id, modules, served_at)
SELECT template_id, state_id,
       (LENGTH(document) - LENGTH(REPLACE(document, '"manifest_digest"', ''))) / LENGTH('"manifest_digest"'),
       computed_at
FROM desired_states;
