COPY count.requests (method_id, request_timestamp, count) FROM STDIN (FORMAT binary)
