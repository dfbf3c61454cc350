"""Results: trial outcomes aggregated into the report model, its statistics, the gates' verdicts,
history and shards."""
