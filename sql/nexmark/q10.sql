-- Nexmark q10, log to file system: each bid with its day and minute, the partition columns
-- Flink writes the bids under (as a query here; INSERT it into a file table to write it).
SELECT auction, bidder, price, date_time, extra,
       to_char(date_time, '%Y-%m-%d') AS dt, to_char(date_time, '%H:%M') AS hm
FROM bid;
