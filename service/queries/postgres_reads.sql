-- The SQL API's PostgreSQL-only settings (CockroachDB has neither JIT, nor
-- a plan cache mode, nor a SET clause on functions).
--
-- count.series_totals: the planner cannot know how few rows each piece
-- reads, and its estimate (millions) would have PostgreSQL JIT-compile the
-- query, about a second spent on every call that takes milliseconds.
-- (count.totals, its SQL wrapper, takes none: a SET clause would keep
-- PostgreSQL from inlining it.)
ALTER FUNCTION count.series_totals(timestamptz, timestamptz, text, text, text[], text, text, text[], text[], text[],
                                   integer)
    SET jit = off;

-- count.bucket_pieces: PL/pgSQL keeps planning its statements afresh on
-- every call (their custom plans never look dearer than a generic one),
-- and planning count.buckets and count.pieces took 1.7 of the 2 ms the
-- call took, in every read: a generic plan, planned once per connection,
-- takes 0.3 ms (a scratch store, warm). They read no table, so a plan
-- for any arguments is as good as one for these.
ALTER FUNCTION count.bucket_pieces(timestamptz, timestamptz, text, text)
    SET plan_cache_mode = force_generic_plan;
