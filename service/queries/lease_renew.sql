UPDATE count_migration_lease SET expires_at = now() + interval '30 seconds'
 WHERE id = 1 AND holder = $1
