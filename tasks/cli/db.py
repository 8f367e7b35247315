"""`hashtagger db migrate`: apply the numbered SQL migrations to the results database."""

from __future__ import annotations


def register(commands) -> None:
    database = commands.add_parser("db", help="the results database").add_subparsers(
        dest="db_command", required=True)
    migrate = database.add_parser("migrate", help="apply new migrations from sql/ (a second run does nothing)",
                                  description="Apply the numbered migrations of sql/ to the results database "
                                              "(HASHTAGGER_DB_URL, default SQLite under HASHTAGGER_HOME).")
    migrate.set_defaults(func=migrate_command)


def migrate_command(args) -> int:
    from tasks import pipeline

    where, applied, crowned = pipeline.migrate_database()
    print(f"applied {', '.join(applied)} to {where}" if applied else f"{where} is up to date")
    for model_id in crowned:  # the bundled models: the first champions, the baseline to beat
        print(f"baseline champion: {model_id} (the bundled model)")
    return 0
