TRUNCATE count.requests, count.minute_method_totals, count.hourly_method_totals, count.daily_method_totals,
    count.monthly_method_totals, count.hourly_tenant_totals, count.daily_tenant_totals,
    count.monthly_tenant_totals, count.producers, count.methods;
