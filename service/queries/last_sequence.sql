SELECT last_sequence FROM count.producers WHERE producer_id = $1
