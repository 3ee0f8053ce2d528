SELECT count.rollup_due()
