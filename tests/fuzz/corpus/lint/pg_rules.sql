SET lock_timeout = '5s';
ALTER TABLE t ADD COLUMN c int NOT NULL;
CREATE INDEX i ON t (a);
-- safe-migrate:ignore drop-table
DROP TABLE u;
