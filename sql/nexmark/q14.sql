-- Nexmark q14, calculation: converted prices in a range, the time of day of each bid and
-- the number of 'c's in its extra field.
SELECT auction, bidder, 0.908 * price AS price,
       CASE
         WHEN date_part('hour', date_time) >= 8 AND date_part('hour', date_time) <= 18 THEN 'dayTime'
         WHEN date_part('hour', date_time) <= 6 OR date_part('hour', date_time) >= 20 THEN 'nightTime'
         ELSE 'otherTime'
       END AS bid_time_type,
       date_time, extra,
       character_length(extra) - character_length(replace(extra, 'c', '')) AS c_counts
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;
