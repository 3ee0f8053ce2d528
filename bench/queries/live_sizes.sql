-- Bytes of the long-term tiers and of the minute tier, tables and indexes.
SELECT (pg_total_relation_size('count.hourly_method_totals') + pg_total_relation_size('count.daily_method_totals')
        + pg_total_relation_size('count.monthly_method_totals'))::bigint,
       pg_total_relation_size('count.minute_method_totals')::bigint
