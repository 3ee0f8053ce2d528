DELETE FROM count_migration_lease WHERE id = 1 AND holder = $1
