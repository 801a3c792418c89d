"""Session files as an older OMDP wrote them: today's file with every later schema step
undone, so each upgrade test starts from a real older layout, whatever steps come after."""

from __future__ import annotations

import re
import sqlite3

from backend.profiling import schema


def make_version(conn: sqlite3.Connection, version: int) -> None:
    """Undo every upgrade step after `version` (newest first) and stamp the file `version`."""
    with conn:
        for _, sql in sorted(schema.UPGRADES.items(), reverse=True)[: _count_after(version)]:
            for column_table, column in reversed(
                re.findall(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", sql)
            ):
                conn.execute(f"ALTER TABLE {column_table} DROP COLUMN {column}")
            for table in reversed(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", sql)):
                conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE schema_version SET version = ?", (version,))


def _count_after(version: int) -> int:
    return sum(1 for v in schema.UPGRADES if v > version)
