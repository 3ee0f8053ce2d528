CREATE TABLE IF NOT EXISTS count_migration_lease (
    id integer PRIMARY KEY CHECK (id = 1),
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
)
