-- migrate:up
SET lock_timeout = '5s';
CREATE TYPE customer_status AS ENUM ('active', 'suspended');
ALTER TABLE customers ADD COLUMN status customer_status NOT NULL DEFAULT 'active';

-- migrate:down
ALTER TABLE customers DROP COLUMN status;
DROP TYPE customer_status;
