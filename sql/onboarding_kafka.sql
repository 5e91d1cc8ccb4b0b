-- Onboarding activity over Kafka: events in, one-minute activity windows per user out.
--
-- Reads the events topic continuously (bad messages go to a dead-letter topic), aggregates
-- each user's activity in one-minute windows, and writes each window, once the watermark
-- closes it, as a JSON message keyed by user to the activity topic. Offsets are committed
-- to the consumer group once a window's results are written, so a restart resumes where
-- the written results end.
--
--   KAFKA_BOOTSTRAP=127.0.0.1:9092 profusion run sql/onboarding_kafka.sql

CREATE TABLE events (
  user_id    TEXT NOT NULL,
  session_id TEXT,
  event_id   TEXT NOT NULL,
  event_type TEXT NOT NULL,
  amount     DOUBLE,
  page       TEXT,
  ts         TIMESTAMP NOT NULL,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'kafka',
  topic = '${EVENTS_TOPIC:-events}',
  'bootstrap.servers' = '${KAFKA_BOOTSTRAP:-127.0.0.1:9092}',
  'group.id' = '${KAFKA_GROUP:-profusion-onboarding}',
  'scan.startup.mode' = 'group-offsets',
  format = 'json',
  bad_data = 'dlq',
  'dlq.topic' = '${DLQ_TOPIC:-events_dlq}',
  -- A partition without new events does not hold the watermark back for longer than this.
  'watermark.idle_timeout' = '30s'
);

CREATE TABLE activity_1m (
  user_id TEXT NOT NULL, window_start TIMESTAMP, window_end TIMESTAMP,
  events BIGINT, forms BIGINT, chats BIGINT, purchases BIGINT, spend DOUBLE, last_page TEXT
) WITH (
  connector = 'kafka',
  topic = '${ACTIVITY_TOPIC:-activity_1m}',
  'bootstrap.servers' = '${KAFKA_BOOTSTRAP:-127.0.0.1:9092}',
  'key.fields' = 'user_id'
);

INSERT INTO activity_1m
SELECT user_id, window_start, window_end,
       count(*)                                            AS events,
       count(*) FILTER (WHERE event_type = 'form_submit')  AS forms,
       count(*) FILTER (WHERE event_type = 'chat_message') AS chats,
       count(*) FILTER (WHERE event_type = 'purchase')     AS purchases,
       round(coalesce(sum(amount), 0), 2)                  AS spend,
       last_value(page ORDER BY ts)                        AS last_page
FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
GROUP BY user_id, window_start, window_end;
