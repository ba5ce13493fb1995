-- migrate:up
CREATE TABLE a (x int);
-- migrate:down
DROP TABLE a;
