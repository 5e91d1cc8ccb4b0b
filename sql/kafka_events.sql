-- Onboarding events into Kafka: the same seeded generator as onboarding.sql, written as
-- JSON messages keyed by user to the events topic (create it first, see the README).
--
--   KAFKA_BOOTSTRAP=127.0.0.1:9092 profusion run sql/kafka_events.sql

CREATE TABLE generated (
  user_id    TEXT NOT NULL,
  session_id TEXT,
  event_id   TEXT NOT NULL,
  event_type TEXT NOT NULL,
  amount     DOUBLE,
  page       TEXT,
  ts         TIMESTAMP NOT NULL
) WITH (
  connector = 'datagen',
  count = ${EVENTS:-100000},
  step = '10ms',
  users = 6,
  seed = 2026,
  out_of_order = '3s'
);

CREATE TABLE events (
  user_id    TEXT NOT NULL,
  session_id TEXT,
  event_id   TEXT NOT NULL,
  event_type TEXT NOT NULL,
  amount     DOUBLE,
  page       TEXT,
  ts         TIMESTAMP NOT NULL
) WITH (
  connector = 'kafka',
  topic = '${EVENTS_TOPIC:-events}',
  'bootstrap.servers' = '${KAFKA_BOOTSTRAP:-127.0.0.1:9092}',
  'key.fields' = 'user_id'
);

INSERT INTO events SELECT * FROM generated;
