-- count.series_totals' PostgreSQL-only setting (CockroachDB has neither JIT
-- nor a SET clause on functions): the planner cannot know how few rows each
-- piece reads, and its estimate (millions) would have PostgreSQL
-- JIT-compile the query, about a second spent on every call that takes
-- milliseconds. (count.totals, its SQL wrapper, takes none: a SET clause
-- would keep PostgreSQL from inlining it.)
ALTER FUNCTION count.series_totals(timestamptz, timestamptz, text, text, text[], text, text, text[], text[], text[],
                                   integer)
    SET jit = off;
