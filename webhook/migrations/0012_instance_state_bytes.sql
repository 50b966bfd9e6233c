-- How many bytes the instance's agent state directory held at its last report (generations,
-- objects, records): what garbage collection keeps. NULL when the report did not say
-- (agents before it).
ALTER TABLE instances ADD COLUMN state_bytes BIGINT;
