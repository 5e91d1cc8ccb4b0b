-- Profiles served over HTTP to chatbots and onboarding flows.
--
-- Events are pushed to POST /v1/ingest/events, signed with the webhook secret; each user's
-- profile is kept in SQLite, read with GET /v1/views/user_profile/{user_id} and scored
-- with POST /v1/score/user_profile/{user_id}.
--
--   WEBHOOK_SECRET=change-me profusion serve sql/serve_profiles.sql --listen 127.0.0.1:8080
--
-- With EVENTS_TOPIC set, events go through that Kafka topic (KAFKA_BOOTSTRAP, default
-- 127.0.0.1:9092) instead: see sql/serve_profiles_kafka.sql.

CREATE TABLE events (
  user_id    TEXT NOT NULL,
  event_type TEXT NOT NULL,
  amount     DOUBLE,
  ts         TIMESTAMP NOT NULL
) WITH (
  connector = 'memory',
  'scan.mode' = 'follow',
  -- Events the pipeline has read are let go beyond the newest million.
  'retention' = '1000000 rows',
  'webhook.secret' = '${WEBHOOK_SECRET}',
  'webhook.timestamp_tolerance' = '5 minutes'
);

CREATE MATERIALIZED VIEW user_profile PRIMARY KEY (user_id) WITH (
  connector = 'sqlite',
  path = '${PROFILE_DB:-profiles.db}',
  'score.purchase_propensity' = 'score_logistic(''${MODELS:-sql/models}/purchase_propensity.json'', events, spend)',
  'score.is_engaged' = 'events >= 10'
) AS
SELECT user_id,
       count(*)                               AS events,
       coalesce(sum(amount), 0.0)             AS spend,
       max(ts)                                AS last_seen,
       last_value(event_type ORDER BY ts)     AS last_event
FROM events
GROUP BY user_id;
