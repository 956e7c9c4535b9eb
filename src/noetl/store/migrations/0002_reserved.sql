-- Placeholder: number 0002 belongs to another branch. When that branch is merged, its 0002 file
-- replaces this one (delete this file then). It changes nothing so either order of merging works.
SELECT 1;
