INSERT INTO count.requests (method_id, request_timestamp, count)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[])
