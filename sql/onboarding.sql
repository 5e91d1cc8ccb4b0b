-- Onboarding activity: what each new user did, minute by minute.
--
-- A seeded generator stands in for the event stream (page views, clicks, form submits,
-- chat messages and purchases, a little out of order, with a few duplicates and late
-- events). Each user's activity is aggregated in one-minute windows, printed as soon as
-- the watermark closes each window.
--
--   profusion run sql/onboarding.sql

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
  connector = 'datagen',
  count = 100000,           -- 100,000 events ...
  step = '10ms',            -- ... 10 ms of event time apart: about 17 minutes
  users = 6,
  seed = 2026,
  out_of_order = '3s',
  duplicate_rate = 0.01,
  late_rate = 0.001,
  late_by = '2 minutes'
);

CREATE TABLE activity_1m (
  user_id TEXT, window_start TIMESTAMP, window_end TIMESTAMP,
  events BIGINT, forms BIGINT, chats BIGINT, purchases BIGINT, spend DOUBLE, last_page TEXT
) WITH (connector = 'stdout', format = 'table');

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
