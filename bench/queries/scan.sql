SELECT method_id, sum(count)::bigint
  FROM count.requests
 WHERE request_timestamp >= ($1::date)::timestamp AT TIME ZONE 'UTC'
   AND request_timestamp < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'
 GROUP BY method_id
