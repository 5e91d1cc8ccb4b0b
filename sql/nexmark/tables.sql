-- The Nexmark streams: people, auctions and bids of one seeded event sequence, as
-- Flink's and RisingWave's Nexmark tables declare them. Run a query with them:
--
--   profusion run sql/nexmark/tables.sql sql/nexmark/q7.sql
--
-- NEXMARK_EVENTS sets how many events (of all three kinds) to generate, NEXMARK_RATE how
-- many a second (0: as fast as possible). 'state.ttl' bounds the joins that have no time
-- bound of their own (q3, q20): people and auctions are kept an hour, bids 10 seconds.

CREATE TABLE person (
  id BIGINT, name TEXT, email_address TEXT, credit_card TEXT, city TEXT, state TEXT,
  date_time TIMESTAMP NOT NULL, extra TEXT,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', table = 'person', events = ${NEXMARK_EVENTS:-100000},
        rate = ${NEXMARK_RATE:-0}, seed = 0, 'state.ttl' = '1 hour');

CREATE TABLE auction (
  id BIGINT, item_name TEXT, description TEXT, initial_bid BIGINT, reserve BIGINT,
  date_time TIMESTAMP NOT NULL, expires TIMESTAMP, seller BIGINT, category BIGINT, extra TEXT,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', table = 'auction', events = ${NEXMARK_EVENTS:-100000},
        rate = ${NEXMARK_RATE:-0}, seed = 0, 'state.ttl' = '1 hour');

CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT,
  date_time TIMESTAMP NOT NULL, extra TEXT,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', table = 'bid', events = ${NEXMARK_EVENTS:-100000},
        rate = ${NEXMARK_RATE:-0}, seed = 0, 'state.ttl' = '10 seconds');
