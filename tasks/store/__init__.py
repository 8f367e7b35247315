"""Store: the results database; all SQL lives here.

db (engines, migrations, the schema check), migrations_sql, results (tagging writes), runs (reads of
runs and their results), registry_sql (the model registry's statements), hashtag_cache_sql (the X
cache and blocklist), sql/ (the numbered migrations and example queries, as package data).
"""
