-- Roles (a user is a role that can log in), role membership, and grants of privileges on
-- cubes and dimensions, optionally scoped to a dimension subtree. The whole access model
-- changes as one unit: `access_version` is the lock every change takes and the version it
-- advances.
CREATE TABLE quantatom.roles (
    name              text PRIMARY KEY,
    can_login         boolean NOT NULL,
    is_admin          boolean NOT NULL,
    -- As PostgreSQL stores one (SCRAM-SHA-256$...), never a password.
    password_verifier text
);

CREATE TABLE quantatom.role_memberships (
    role   text NOT NULL REFERENCES quantatom.roles (name),
    member text NOT NULL REFERENCES quantatom.roles (name),
    PRIMARY KEY (role, member)
);

CREATE TABLE quantatom.grants (
    grantee         text NOT NULL REFERENCES quantatom.roles (name),
    privilege       text NOT NULL CHECK (privilege IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')),
    object          text NOT NULL CHECK (object ~ '^(cube|dim)\.[^.]+$'),
    scope_dimension text REFERENCES quantatom.dimensions (name),
    scope_path      ltree,
    CHECK ((scope_dimension IS NULL) = (scope_path IS NULL)),
    UNIQUE NULLS NOT DISTINCT (grantee, privilege, object, scope_dimension, scope_path)
);

CREATE INDEX grants_scope_path ON quantatom.grants USING gist (scope_path);

CREATE TABLE quantatom.access_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint NOT NULL
);

INSERT INTO quantatom.access_version (version) VALUES (0);
