-- The minute tier holds what the bench writes from $1 on.
UPDATE count.tiers SET complete_from = $1 WHERE tier = 'minute'
