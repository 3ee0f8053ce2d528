-- Raw rows left, and the requests stored: raw, or rolled up (everything
-- rolled up is in the daily totals). One statement, one snapshot: a rollup
-- moving rows meanwhile is seen whole or not at all.
SELECT (SELECT count(*) FROM count.requests),
       ((SELECT coalesce(sum(count), 0) FROM count.requests)
        + (SELECT coalesce(sum(total), 0) FROM count.daily_method_totals))::bigint
