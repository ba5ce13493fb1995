-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY i ON a(x);
