"""The cloud's database: SQLAlchemy 2 models (`cloud.db.models`), engines and Alembic upgrades
(`cloud.db.engine`). PostgreSQL in production, SQLite as the embedded default."""
