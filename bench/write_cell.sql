\set month random(1, 12)
\set product random(1, 67)
\set amount random(1, 10000000)
INSERT INTO cube.finance VALUES ('Budget', '2025_' || lpad(:month::text, 2, '0'), 'DE', '4000', 'P' || lpad(:product::text, 4, '0'), 'EUR', :amount / 100.0);
