"""Store: the results database; all SQL lives here.

db (engines, migrations, the schema check), deadlines (client-side deadlines on PostgreSQL connections),
migrations_sql, results (tagging writes), leases (one run per source), runs (reads of runs and their
results), registry_sql (the model registry's statements), hashtag_cache_sql (the X cache and blocklist),
sql/ (the numbered migrations and example queries, as package data).
"""
