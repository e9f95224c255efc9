"""Full-text search of the messages a user can read: PostgreSQL tsvector + GIN, or SQLite FTS5, behind one interface."""
