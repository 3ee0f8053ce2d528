-- Per-minute totals of $1 endpoints from $2 (a UTC midnight) to $3.
INSERT INTO count.minute_method_totals (minute, method_id, total)
SELECT m, k, 1 + (k + extract(epoch FROM m)::bigint / 60) % 7
  FROM generate_series($2::timestamptz, $3::timestamptz - interval '1 minute', interval '1 minute') AS m,
       generate_series(1, $1::bigint) AS k
