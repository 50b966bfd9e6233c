-- What an instance observed of its modules with its last report: per module, the installed
-- versions of its Debian packages and the states of its systemd units, as JSON text
-- (`{"module": {"packages": {"name": "version" | null}, "units": {"unit": "state"}}}`,
-- sorted keys). NULL when the report carried none (agents before observations).
ALTER TABLE instances ADD COLUMN module_observations TEXT;
