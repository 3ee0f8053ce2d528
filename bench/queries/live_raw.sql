-- The raw rows between two rollups: 5 seconds of $1 endpoints up to $2.
INSERT INTO count.requests (method_id, request_timestamp, count)
SELECT k, $2::timestamptz - s * interval '1 second', 1
  FROM generate_series(1, $1::bigint) AS k, generate_series(0, 4) AS s
