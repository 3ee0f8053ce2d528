WITH endpoint AS (
    INSERT INTO count.methods (method, path) VALUES ($1, $2)
    ON CONFLICT (tenant, method, path, status_code) DO UPDATE SET method = excluded.method
    RETURNING id
)
INSERT INTO count.requests (method_id, request_timestamp, count)
SELECT id, $3, 1 FROM endpoint
