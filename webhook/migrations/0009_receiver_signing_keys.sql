-- The key ids the receiver's replicas sign desired states with (`[fleet] signing_key`, plus
-- `next_signing_key` during a rotation), as the last replica to start recorded them: a JSON
-- array, sorted. One row. A replica whose keys share none of these refuses to start, since
-- nodes would refuse the states one of the two signs.
CREATE TABLE receiver_signing_keys (
    id INTEGER PRIMARY KEY,
    keyids TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
