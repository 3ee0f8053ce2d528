INSERT INTO count.methods (id, method, path)
SELECT k, 'GET', '/bench/' || k FROM generate_series(1, $1::bigint) AS k
