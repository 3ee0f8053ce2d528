-- Partition upkeep at start-up, for a role that may run it (the schema's
-- owner, by the extension's grant); count.rollup_due does it otherwise.
SELECT count.prepare_partitions()
 WHERE has_function_privilege('count.prepare_partitions(date, integer)', 'EXECUTE')
