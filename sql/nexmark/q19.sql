-- Nexmark q19, auction TOP-10 price: the ten highest bids of each auction (ties by time),
-- a changelog keyed by auction and rank.
-- changelog key: auction, rank_number
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, date_time) AS rank_number
  FROM bid)
WHERE rank_number <= 10;
