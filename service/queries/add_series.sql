SELECT count.add_series($1, $2, $3, $4, $5, $6, $7, $8)
