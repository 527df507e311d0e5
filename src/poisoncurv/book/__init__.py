"""Book infrastructure: the chapter runtime (glue, figures, tables, provenance cell), the claims
ledger and figure index, re-execution of chapters (`rerun`) and the nbval notebook list."""
