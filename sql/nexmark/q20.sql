-- Nexmark q20, expanded bid information: each bid on an auction of category 10, with the
-- auction's details. A join of two streams kept bounded by the tables' 'state.ttl'.
SELECT b.auction, b.bidder, b.price, b.channel, b.url, b.date_time, b.extra,
       a.item_name, a.description, a.initial_bid, a.reserve, a.date_time, a.expires,
       a.seller, a.category, a.extra
FROM bid AS b INNER JOIN auction AS a ON b.auction = a.id
WHERE a.category = 10;
