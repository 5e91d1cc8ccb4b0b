-- Impressions and the clicks they earn: an interval join of two streams, and a window over
-- its output.
--
-- A seeded generator stands in for the event stream. Every event is an impression of a
-- page; the events whose type is 'click' stand for a click on that impression 40 seconds
-- later. A click counts for its impression within 2 minutes; an impression with no click
-- comes out of the LEFT JOIN with NULLs as soon as the click stream's watermark has passed
-- its 2 minutes, so each 10-minute window of click-through closes while the stream runs.
--
--   profusion run sql/impressions_clicks.sql

CREATE TABLE events (
  user_id    TEXT NOT NULL,
  event_id   TEXT NOT NULL,
  event_type TEXT NOT NULL,
  page       TEXT,
  ts         TIMESTAMP NOT NULL,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'datagen',
  count = 50000,
  step = '20ms',
  users = 8,
  seed = 2026
);

CREATE VIEW impressions AS
SELECT event_id AS impression_id, user_id, page, ts FROM events;

CREATE VIEW clicks AS
SELECT event_id AS impression_id, ts + INTERVAL '40' SECOND AS ts
FROM events WHERE event_type = 'click';

-- Click-through per user and 10 minutes.
SELECT user_id, window_start, count(*) AS impressions, count(clicked_at) AS clicks,
       round(count(clicked_at) * 100.0 / count(*), 1) AS ctr_percent
FROM TUMBLE(
  (SELECT i.user_id, i.ts, c.ts AS clicked_at
   FROM impressions i LEFT JOIN clicks c
     ON c.impression_id = i.impression_id
    AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '2' MINUTE),
  ts, INTERVAL '10' MINUTE)
GROUP BY user_id, window_start, window_end;
