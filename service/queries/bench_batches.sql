SELECT coalesce(max(last_sequence), 0)::bigint FROM count.producers WHERE producer_id = $1
