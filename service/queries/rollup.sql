SELECT count.rollup($1)
