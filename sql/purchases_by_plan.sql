-- Revenue per plan, where each purchase counts for the plan its user was on when buying:
-- a temporal join of the event stream with the users' plan changes, read as a versioned
-- table (FOR SYSTEM_TIME AS OF), and a window over the join's output.
--
-- A seeded generator stands in for the event stream; the plan changes are a small file,
-- one row per change (in production: an upsert or Debezium topic of the CRM's table).
-- Each row of plan_changes is a version of its user's plan, valid from changed_at until
-- the user's next change, so a user who moved from free to pro at 00:04 has the purchases
-- before that counted for free and the ones after for pro.
--
--   profusion run sql/purchases_by_plan.sql

CREATE TABLE events (
  user_id    TEXT NOT NULL,
  event_type TEXT NOT NULL,
  amount     DOUBLE,
  ts         TIMESTAMP NOT NULL,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  connector = 'datagen',
  count = 50000,
  step = '20ms',
  users = 8,
  seed = 2026
);

CREATE TABLE plan_changes (
  user_id    TEXT NOT NULL,
  plan       TEXT NOT NULL,
  changed_at TIMESTAMP NOT NULL,
  WATERMARK FOR changed_at AS changed_at
) WITH (
  connector = 'file',
  path = 'sql/data/plan_changes.jsonl',
  format = 'json'
);

-- Purchases and revenue per plan and 5 minutes.
SELECT plan, window_start, count(*) AS purchases, round(sum(amount), 2) AS revenue
FROM TUMBLE(
  (SELECT e.ts, e.amount, coalesce(p.plan, 'none') AS plan
   FROM events e
   LEFT JOIN plan_changes FOR SYSTEM_TIME AS OF e.ts AS p ON p.user_id = e.user_id
   WHERE e.event_type = 'purchase'),
  ts, INTERVAL '5' MINUTE)
GROUP BY plan, window_start, window_end;
