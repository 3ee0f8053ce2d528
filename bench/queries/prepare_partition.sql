SELECT count.prepare_partitions($1, 1)
