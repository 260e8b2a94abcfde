SELECT p.code AS account, p.name,
       sum(f.amount) FILTER (WHERE m.parent = '2025_Q1') AS q1,
       sum(f.amount) FILTER (WHERE m.parent = '2025_Q2') AS q2,
       sum(f.amount) FILTER (WHERE m.parent = '2025_Q3') AS q3,
       sum(f.amount) FILTER (WHERE m.parent = '2025_Q4') AS q4
FROM cube.finance f
JOIN dim.entity e ON e.code = f.entity
JOIN dim.time m ON m.code = f.time
JOIN dim.account a ON a.code = f.account
JOIN dim.account p ON a.path <@ p.path
WHERE f.version = 'Budget' AND e.path <@ 'Total.EMEA' AND m.path <@ 'FY2025' AND p.level <= 3
GROUP BY p.code, p.name, p.sort_order
ORDER BY p.sort_order;
