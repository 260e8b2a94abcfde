-- Every change of a dimension's members, written in the transaction that makes it: the ledger
-- is derived from it (a change is in the ledger even if the server dies right after
-- committing it). One row per member changed: its JSON before (NULL when added) and after
-- (NULL when deleted).
CREATE TABLE quantatom.member_history (
    dimension    text        NOT NULL,
    version      bigint      NOT NULL,
    committed_at timestamptz NOT NULL,
    user_name    text,
    statement_id text,
    statement    text,
    code         text        NOT NULL,
    before       jsonb,
    after        jsonb,
    PRIMARY KEY (dimension, version, code)
);
