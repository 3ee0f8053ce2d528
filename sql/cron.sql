-- Schedules the rollup with pg_cron, in the database that holds count's
-- schema. Needs, before the server starts:
--   shared_preload_libraries = 'pg_cron'
--   cron.database_name = '<this database>'
-- Every minute, pg_cron's finest schedule: each run rolls up every raw row,
-- late data included. Reads are live whatever the schedule (they add the raw
-- rows not rolled up yet); rolling up often keeps those rows few. A run that
-- finds another under way (count serve --rollup-every, say) returns at once.
CREATE EXTENSION IF NOT EXISTS pg_cron;
SELECT cron.schedule('count-rollup-due', '* * * * *', 'SELECT count.rollup_due()');
