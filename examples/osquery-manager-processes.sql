-- Osquery Manager pack query for examples/osquery-manager.ini: one row per process, with its parent's
-- name and command line, its user and its binary's SHA-256. The column names are the osquery.* fields
-- the osquery-manager data profile reads (connector/profiles.py).
SELECT
  p.pid AS pid,
  p.name AS name,
  p.path AS path,
  p.cmdline AS cmdline,
  u.username AS username,
  h.sha256 AS sha256,
  pp.name AS parent_name,
  pp.cmdline AS parent_cmdline
FROM processes AS p
LEFT JOIN processes AS pp ON pp.pid = p.parent
LEFT JOIN users AS u ON u.uid = p.uid
LEFT JOIN hash AS h ON h.path = p.path;
