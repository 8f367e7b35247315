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
    from tasks.store import db

    engine = db.engine()
    applied = db.migrate(engine)
    where = engine.url.render_as_string(hide_password=True)
    print(f"applied {', '.join(applied)} to {where}" if applied else f"{where} is up to date")
    _record_baseline(engine)
    return 0


def _record_baseline(engine) -> None:
    """The bundled models become the first champions, the baseline every trained model must beat."""
    from tasks.registry import registry

    for model_id in registry.ensure_baseline(engine):
        print(f"baseline champion: {model_id} (the bundled model)")
