-- Where the tenant tiers of V6 start. Data only, idempotent (a second run
-- inserts nothing): see V3.
--
-- What was rolled up before is in the series tiers only, so the tenant
-- tiers start after the last rolled-up day, and at least two days ahead:
-- until the service installs the new count.add_totals (after the
-- migrations), a rollup by the previous one, which knows nothing of these
-- tiers, may still run, and count accepts timestamps a little into the
-- future. A database with nothing rolled up and no raw rows (a new one)
-- starts them at once.
INSERT INTO count.tenant_tiers (one_row, complete_from)
SELECT true,
       CASE WHEN max(day) IS NULL AND NOT EXISTS (SELECT 1 FROM count.requests) THEN '-infinity'::timestamptz
            ELSE greatest(coalesce(max(day) + 1, (now() AT TIME ZONE 'UTC')::date + 2),
                          (now() AT TIME ZONE 'UTC')::date + 2)::timestamp AT TIME ZONE 'UTC'
       END
  FROM count.daily_method_totals
ON CONFLICT (one_row) DO NOTHING;
