-- A first-use pin can wait for an operator: with `trust_on_first_use = "confirm"` the first
-- identity is recorded as `proposed`, and versions signed by it wait until an operator
-- confirms it (it becomes the pin) or rejects it (`POST /api/v1/pins/{module}/confirm|reject`).
-- Pins made before this migration were pinned automatically: they are `confirmed`.
ALTER TABLE trust_pins ADD COLUMN state TEXT NOT NULL DEFAULT 'confirmed';
-- The manifest digest of the version whose ingest proposed the pin.
ALTER TABLE trust_pins ADD COLUMN manifest_digest TEXT;
-- Who confirmed or rejected it (`api:<token name>`), by which edge, and when.
ALTER TABLE trust_pins ADD COLUMN decided_by TEXT;
ALTER TABLE trust_pins ADD COLUMN decided_via TEXT;
ALTER TABLE trust_pins ADD COLUMN decided_at BIGINT;
