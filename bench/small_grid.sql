SELECT account, sum(amount) AS amount FROM cube.finance WHERE version = 'Budget' AND time = '2025_03' AND entity = 'DE' GROUP BY account ORDER BY account;
