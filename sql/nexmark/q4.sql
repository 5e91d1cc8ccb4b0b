-- Nexmark q4, average price for a category: each auction's winning bid within its
-- lifetime (an interval join bounded by the auction's own expiry, and a GROUP BY per
-- auction kept up to date), then the average of those per category. The second average
-- is over answers that change as bids arrive, so both are materialized views: the
-- averages are recomputed from the winning bids' store whenever it changes.
-- answer: q4

CREATE MATERIALIZED VIEW q4_winning_bids PRIMARY KEY (id)
WITH (connector = 'sqlite', path = '${NEXMARK_DB:-nexmark.db}') AS
SELECT a.id, a.category, max(b.price) AS final
FROM auction a, bid b
WHERE a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.expires
GROUP BY a.id, a.category;

CREATE MATERIALIZED VIEW q4 PRIMARY KEY (category)
WITH (connector = 'sqlite', path = '${NEXMARK_DB:-nexmark.db}') AS
SELECT category, avg(final) AS avg_final FROM q4_winning_bids GROUP BY category;
