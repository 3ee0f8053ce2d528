TRUNCATE count.requests, count.daily_method_totals, count.monthly_method_totals, count.producers, count.methods;
