-- Between loads into one running server: every count goes, the endpoints
-- stay (the extension's add_batch caches their ids per connection, and
-- count never deletes an endpoint).
TRUNCATE count.requests, count.minute_method_totals, count.hourly_method_totals, count.daily_method_totals,
    count.monthly_method_totals, count.hourly_tenant_totals, count.daily_tenant_totals,
    count.monthly_tenant_totals, count.producers;
