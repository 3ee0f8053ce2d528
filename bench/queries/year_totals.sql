INSERT INTO count.daily_method_totals (day, method_id, total)
SELECT $1::date + d, k, 1 + (k + d) % 7
  FROM generate_series(1, $2::bigint) AS k, generate_series(0, 364) AS d
