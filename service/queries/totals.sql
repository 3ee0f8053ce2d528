SELECT bucket, method, path, tenant, status_code, status_class, total, live
  FROM count.series_totals($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
