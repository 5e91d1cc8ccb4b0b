-- sql/serve_profiles.sql with the events going through a Kafka topic: webhook events are
-- produced to the topic, and the pipeline reads the topic into the profiles, so other
-- producers' events count too and a restart loses nothing the broker acknowledged.
--
--   WEBHOOK_SECRET=change-me EVENTS_TOPIC=events \
--     profusion serve sql/serve_profiles_kafka.sql --listen 127.0.0.1:8080

CREATE TABLE events (
  user_id    TEXT NOT NULL,
  event_type TEXT NOT NULL,
  amount     DOUBLE,
  ts         TIMESTAMP NOT NULL
) WITH (
  connector = 'kafka',
  topic = '${EVENTS_TOPIC:-events}',
  'bootstrap.servers' = '${KAFKA_BOOTSTRAP:-127.0.0.1:9092}',
  format = 'json',
  'scan.startup.mode' = 'earliest',
  'webhook.secret' = '${WEBHOOK_SECRET}'
);

CREATE MATERIALIZED VIEW user_profile PRIMARY KEY (user_id) WITH (
  connector = 'sqlite',
  path = '${PROFILE_DB:-profiles.db}',
  'score.purchase_propensity' = 'score_logistic(''${MODELS:-sql/models}/purchase_propensity.json'', events, spend)'
) AS
SELECT user_id,
       count(*)                               AS events,
       coalesce(sum(amount), 0.0)             AS spend,
       max(ts)                                AS last_seen,
       last_value(event_type ORDER BY ts)     AS last_event
FROM events
GROUP BY user_id;
