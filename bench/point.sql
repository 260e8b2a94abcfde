\set p random(1, 67)
SELECT code, name, parent, level FROM dim.product WHERE code = 'P' || lpad(:p::text, 4, '0');
