SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'count')
