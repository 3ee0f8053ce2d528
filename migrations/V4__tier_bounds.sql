-- Where each fine tier of V3 starts. Data only, idempotent (a second run
-- inserts nothing): see V3.
--
-- Totals rolled up before these migrations are in the daily and monthly
-- tiers only: the finer tiers are complete from the day after the last
-- rolled-up day. Raw rows not rolled up yet reach every tier.
INSERT INTO count.tiers (tier, keep, complete_from)
SELECT t.tier, t.keep,
       coalesce((SELECT (max(day) + 1)::timestamp AT TIME ZONE 'UTC' FROM count.daily_method_totals),
                '-infinity')
  FROM (VALUES ('minute', interval '35 days'), ('hour', NULL::interval)) AS t (tier, keep)
ON CONFLICT (tier) DO NOTHING;
