-- Schedules the rollup with pg_cron, in the database that holds count's
-- schema. Needs, before the server starts:
--   shared_preload_libraries = 'pg_cron'
--   cron.database_name = '<this database>'
-- Every hour at minute 5: each run rolls up every complete UTC day that still
-- has raw rows, so the day just ended is rolled up soon after midnight UTC and
-- late data is picked up within the hour. Rolling up is idempotent.
CREATE EXTENSION IF NOT EXISTS pg_cron;
SELECT cron.schedule('count-rollup-due', '5 * * * *', 'SELECT count.rollup_due()');
