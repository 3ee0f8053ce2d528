TRUNCATE count.requests, count.minute_method_totals, count.hourly_method_totals, count.daily_method_totals,
    count.monthly_method_totals, count.producers, count.methods;
