"""Store: the results database (engine, migrations, results writes); all SQL lives here."""
