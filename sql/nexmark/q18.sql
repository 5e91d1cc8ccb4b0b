-- Nexmark q18, find last bid: the latest bid of each bidder on each auction, as Flink
-- and RisingWave deduplicate, with ROW_NUMBER. The answer changes as bids arrive, so it is
-- a changelog: the last row of each key is the latest bid so far.
-- changelog key: auction, bidder
SELECT auction, bidder, price, channel, url, date_time, extra
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC) AS rank_number
  FROM bid)
WHERE rank_number <= 1;
