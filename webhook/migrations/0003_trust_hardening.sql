-- Who asked is a typed actor (`gitea:<user>`, `api:<token name>`, `auto`), never a bare
-- string a Gitea username could equal. Requests made by comments before this migration were
-- made by Gitea users; API requests already carried the `api:` prefix.
UPDATE promotion_requests SET requester = 'gitea:' || requester WHERE via = 'comment';

-- A yank request keeps the requester's reason while it waits.
ALTER TABLE promotion_requests ADD COLUMN reason TEXT;

-- Leases are fenced: a worker completes or fails a job only while it holds the lease token
-- it was given when it claimed the job.
ALTER TABLE jobs ADD COLUMN lease_token TEXT;

-- A first-use pin is an identity pattern (not one exact identity), pinned once.
ALTER TABLE trust_pins ADD COLUMN identity_pattern TEXT;
