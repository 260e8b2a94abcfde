-- Dimensions and their members. A member's place in its hierarchy is its ltree path (codes
-- from the root down), indexed with GiST so that subtree predicates (`path <@ 'Total.EMEA'`)
-- use the index.
CREATE EXTENSION IF NOT EXISTS ltree;

CREATE TABLE quantatom.dimensions (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    description text NOT NULL,
    -- Advanced by every change to the dimension's members; a cached plan that read them is
    -- right while it stands still.
    version     bigint NOT NULL DEFAULT 0
);

CREATE TABLE quantatom.members (
    dimension  text NOT NULL REFERENCES quantatom.dimensions (name) ON DELETE CASCADE,
    code       text NOT NULL,
    name       text NOT NULL,
    parent     text,
    path       ltree NOT NULL,
    level      integer NOT NULL GENERATED ALWAYS AS (nlevel(path)) STORED,
    is_leaf    boolean NOT NULL,
    sort_order integer NOT NULL,
    attributes jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (dimension, code),
    FOREIGN KEY (dimension, parent) REFERENCES quantatom.members (dimension, code),
    UNIQUE (dimension, path)
);

CREATE INDEX members_path ON quantatom.members USING gist (path);
