DELETE FROM count.producers WHERE producer_id = $1
