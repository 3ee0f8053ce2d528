-- Every row of the endpoint GET $1 (what `count check` wrote), one
-- statement per table, run in this order in one transaction: the daily and
-- monthly totals refer to count.methods.
DELETE FROM count.requests WHERE method_id IN (SELECT id FROM count.methods WHERE method = 'GET' AND path = $1);
DELETE FROM count.minute_method_totals WHERE method_id IN (SELECT id FROM count.methods WHERE method = 'GET' AND path = $1);
DELETE FROM count.hourly_method_totals WHERE method_id IN (SELECT id FROM count.methods WHERE method = 'GET' AND path = $1);
DELETE FROM count.daily_method_totals WHERE method_id IN (SELECT id FROM count.methods WHERE method = 'GET' AND path = $1);
DELETE FROM count.monthly_method_totals WHERE method_id IN (SELECT id FROM count.methods WHERE method = 'GET' AND path = $1);
DELETE FROM count.methods WHERE method = 'GET' AND path = $1
