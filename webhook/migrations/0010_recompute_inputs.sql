-- Incremental recomputation (ARCHITECTURE.md §8). Each template's latest computation keeps
-- the digest of the inputs it was computed from (resolved versions, their digests and signer
-- policies, the assignments, the platform): a recomputation whose inputs digest the same
-- composes nothing. `closure` is a JSON array of every module name those inputs reach (the
-- assignments, the served state's modules and the dependency names of every live version of
-- a module reached): a change to a module's `live` set recomputes only the templates whose
-- closure names it. `modules` is the computed state's composition order. NULL (rows from
-- before this migration): always recomputed.
ALTER TABLE template_findings ADD COLUMN input_digest TEXT;
ALTER TABLE template_findings ADD COLUMN closure TEXT;
ALTER TABLE template_findings ADD COLUMN modules TEXT;

-- Templates computed before this migration have no closure, so every promotion recomputes
-- them until they are computed once more: one full recomputation at first start records it.
INSERT INTO jobs (id, kind, dedupe_key, payload, state, attempts, run_at, created_at, updated_at)
SELECT 'migration-0010-desired-states', 'desired_states', 'desired_states', '{}', 'queued', 0, 0, 0, 0
WHERE EXISTS (SELECT 1 FROM templates)
ON CONFLICT DO NOTHING;
