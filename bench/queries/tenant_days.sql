-- Every series' daily totals over [$1, $2), whole UTC days of one month:
-- 1 to 7 requests a day.
INSERT INTO count.daily_method_totals (day, method_id, total)
SELECT d::date, m.id, 1 + m.id % 7
  FROM count.methods AS m,
       generate_series($1::timestamptz, $2::timestamptz - interval '1 day', interval '1 day') AS d
