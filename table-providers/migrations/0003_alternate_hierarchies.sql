-- Alternate hierarchies: a dimension-like entry `<dimension>__<hierarchy>` whose members
-- arrange the dimension's members (its leaves) in another tree.
ALTER TABLE quantatom.dimensions
    ADD COLUMN hierarchy_of text REFERENCES quantatom.dimensions (name);
