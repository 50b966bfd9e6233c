-- Each report's drift verdict, judged when the report arrives against the state its template
-- served then: the fleet's drift summary and the console's fleet page read these instead of
-- judging every report again. `judged_against` names what the verdict was judged against
-- (the served state id and a fingerprint of the yanked versions); a verdict is used only
-- while that is still what the template serves and what is yanked, and only while the report
-- is fresh (staleness is judged when read). NULL: judged by no receiver yet (reports before
-- this migration, or a template serving nothing); such instances are judged in full.
ALTER TABLE instances ADD COLUMN judged_against TEXT;
ALTER TABLE instances ADD COLUMN drift_state TEXT;
ALTER TABLE instances ADD COLUMN drift_reasons TEXT;
