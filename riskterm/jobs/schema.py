"""Tables of the job pool (schema version 2 of the database)."""

JOBS_MIGRATION: list[str] = []
