-- Nexmark q6, average selling price by seller: the average winning bid of each seller's
-- last 10 auctions (by expiry). Winning bids as in q4, kept in a view; the average over
-- each seller's latest ten is recomputed from that view's store whenever it changes.
-- answer: q6

CREATE MATERIALIZED VIEW q6_winning_bids PRIMARY KEY (id)
WITH (connector = 'sqlite', path = '${NEXMARK_DB:-nexmark.db}') AS
SELECT a.id, a.seller, a.expires, max(b.price) AS final
FROM auction a, bid b
WHERE a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.expires
GROUP BY a.id, a.seller, a.expires;

CREATE MATERIALIZED VIEW q6 PRIMARY KEY (seller)
WITH (connector = 'sqlite', path = '${NEXMARK_DB:-nexmark.db}') AS
SELECT seller, avg(final) AS avg_final
FROM (SELECT seller, final,
             ROW_NUMBER() OVER (PARTITION BY seller ORDER BY expires DESC, id DESC) AS recency
      FROM q6_winning_bids)
WHERE recency <= 10
GROUP BY seller;
