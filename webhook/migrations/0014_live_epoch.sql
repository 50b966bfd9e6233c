-- Counts changes to the set of `live` versions (a promotion to live, a yank from live), each
-- bumped in the transition's own transaction. A recomputation of many templates reads the
-- live set once, after this counter; under each template's lock it uses that live set only
-- while the counter is unchanged. Otherwise another replica may already have served a state
-- composed from a newer live set, and composing from the older one would serve older
-- versions after newer ones.
CREATE TABLE live_epoch (
    id BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL
);
INSERT INTO live_epoch (id, epoch) VALUES (1, 0);
