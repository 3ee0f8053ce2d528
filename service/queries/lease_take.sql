INSERT INTO count_migration_lease AS l (id, holder, expires_at)
VALUES (1, $1, now() + interval '30 seconds')
ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
 WHERE l.expires_at < now()
RETURNING l.holder
