SELECT count.prepare_partitions()
