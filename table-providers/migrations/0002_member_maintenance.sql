-- Member maintenance rewrites many rows in one transaction: a member renamed carries its
-- children's parent references, a member moved rewrites its subtree's paths. Parent references
-- and path uniqueness are checked when the transaction commits, not row by row.
ALTER TABLE quantatom.members
    ALTER CONSTRAINT members_dimension_parent_fkey DEFERRABLE INITIALLY DEFERRED;

ALTER TABLE quantatom.members
    DROP CONSTRAINT members_dimension_path_key,
    ADD CONSTRAINT members_dimension_path_key UNIQUE (dimension, path)
        DEFERRABLE INITIALLY DEFERRED;
