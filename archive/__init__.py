"""The compliance archive: closed obligations written once to SQL (SQLite or PostgreSQL)."""
