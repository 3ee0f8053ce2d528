-- Monthly totals, kept by the rollups next to the daily ones, so that a
-- month or year is read from at most 12 rows per endpoint instead of 365.
CREATE TABLE count.monthly_method_totals (
    month date NOT NULL,
    method_id bigint NOT NULL REFERENCES count.methods (id),
    total bigint NOT NULL CHECK (total >= 0),
    PRIMARY KEY (month, method_id)
);

INSERT INTO count.monthly_method_totals (month, method_id, total)
SELECT day - (extract(day FROM day)::int - 1), method_id, sum(total)::bigint
  FROM count.daily_method_totals
 GROUP BY 1, 2;
