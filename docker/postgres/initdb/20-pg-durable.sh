#!/bin/bash
# Runs once, when the data directory is created. pg_durable is created in the database named by
# pg_durable.database (`postgres`), whatever POSTGRES_DB is; pgmq too, so push mode finds both.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_durable;
CREATE EXTENSION IF NOT EXISTS pgmq;
SQL
