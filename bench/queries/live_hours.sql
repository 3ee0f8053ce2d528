-- Per-hour totals of $1 endpoints: from $2 to $3 (a UTC midnight) made up,
-- a request in each quarter-hour of each hour; from $3 on, the minutes'
-- sums, as a rollup would have added them.
INSERT INTO count.hourly_method_totals (hour, method_id, q1, q2, q3, q4)
SELECT h, k, 1 + k % 7, 1 + k % 5, 1 + k % 3, 1 + k % 2
  FROM generate_series(date_trunc('hour', $2::timestamptz, 'UTC'), $3::timestamptz - interval '1 hour',
                       interval '1 hour') AS h,
       generate_series(1, $1::bigint) AS k
UNION ALL
SELECT date_trunc('hour', minute, 'UTC'), method_id,
       coalesce(sum(total) FILTER (WHERE extract(minute FROM minute AT TIME ZONE 'UTC') < 15), 0),
       coalesce(sum(total) FILTER (WHERE extract(minute FROM minute AT TIME ZONE 'UTC') BETWEEN 15 AND 29), 0),
       coalesce(sum(total) FILTER (WHERE extract(minute FROM minute AT TIME ZONE 'UTC') BETWEEN 30 AND 44), 0),
       coalesce(sum(total) FILTER (WHERE extract(minute FROM minute AT TIME ZONE 'UTC') >= 45), 0)
  FROM count.minute_method_totals
 GROUP BY 1, 2
