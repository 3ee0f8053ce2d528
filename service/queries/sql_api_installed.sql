SELECT to_regprocedure('count.add_batch(text, bigint, text[], text[], timestamptz[], bigint[])') IS NOT NULL
