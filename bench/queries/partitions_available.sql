SELECT to_regprocedure('count.prepare_partitions(date, integer)') IS NOT NULL
