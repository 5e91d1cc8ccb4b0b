-- Checkpoint size and time for a million keys (BENCHMARKS.md): an unbounded generator over
-- 1,000,000 users into a per-user GROUP BY whose upserts go nowhere, so the run is the
-- view's state and nothing else. After about a minute every user has a key:
--
--   profusion run sql/checkpoint_1m_keys.sql --checkpoint-dir /tmp/chk-1m --checkpoint-interval 20s
--   profusion checkpoints list /tmp/chk-1m --verbose
CREATE TABLE events (user_id TEXT NOT NULL, event_type TEXT, amount DOUBLE,
  ts TIMESTAMP NOT NULL)
WITH (connector = 'datagen', users = 1000000, seed = 7);

CREATE TABLE nowhere (user_id TEXT, events BIGINT, spend DOUBLE, last_seen TIMESTAMP,
  last_event TEXT)
WITH (connector = 'blackhole');

INSERT INTO nowhere
SELECT user_id, count(*), sum(amount), max(ts), last_value(event_type ORDER BY ts)
FROM events GROUP BY user_id;
