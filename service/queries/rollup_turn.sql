-- The rollups' turn, as count.rollup takes it (sql/rollup.sql): waits for a
-- rollup under way, and keeps the next from starting until the transaction
-- ends.
SELECT tier FROM count.tiers WHERE tier = 'minute' FOR UPDATE
