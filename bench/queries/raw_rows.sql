SELECT count(*), coalesce(sum(count), 0)::bigint FROM count.requests
