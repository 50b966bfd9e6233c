-- Desired-state schema 2: each served state carries the template's sequence number (the
-- next state takes the next one, by compare-and-set on this column, so two replicas never
-- serve two states under one number) and its expiry (unix seconds), and says why it is not
-- the state the assignments ask for: NULL when it is, else JSON
-- `{"mode": "degraded" | "held", "reason", "dropped", "findings"}` (a yank left something
-- uncomposable, so what could be composed, or a hold, is served instead).
ALTER TABLE desired_states ADD COLUMN sequence BIGINT NOT NULL DEFAULT 0;
ALTER TABLE desired_states ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE desired_states ADD COLUMN degraded TEXT;

-- States served before this migration are schema 1, which nodes now refuse: the
-- recomputation job re-issues each as schema 2 (same content, sequence 1) at first start.
INSERT INTO jobs (id, kind, dedupe_key, payload, state, attempts, run_at, created_at, updated_at)
SELECT 'migration-0006-desired-states', 'desired_states', 'desired_states', '{}', 'queued', 0, 0, 0, 0
WHERE EXISTS (SELECT 1 FROM desired_states)
ON CONFLICT DO NOTHING;
