INSERT INTO count.producers AS p (producer_id, last_sequence)
VALUES ($1, $2)
ON CONFLICT (producer_id) DO UPDATE
    SET last_sequence = excluded.last_sequence, updated_at = now()
    WHERE p.last_sequence < excluded.last_sequence
RETURNING 1
