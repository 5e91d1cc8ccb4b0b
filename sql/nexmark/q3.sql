-- Nexmark q3, local item suggestion: who sells in category 10 in Oregon, Idaho or
-- California. A join of two streams without a time bound, kept bounded by the tables'
-- 'state.ttl'.
SELECT p.name, p.city, p.state, a.id
FROM auction AS a INNER JOIN person AS p ON a.seller = p.id
WHERE a.category = 10 AND (p.state = 'or' OR p.state = 'id' OR p.state = 'ca');
