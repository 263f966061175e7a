-- Runs once, when the data directory is created, in POSTGRES_DB.
CREATE EXTENSION IF NOT EXISTS pgmq;
