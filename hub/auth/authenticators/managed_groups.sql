-- Queries of hub/auth/authenticators/managed_groups.py.

-- name: groups_of_user
SELECT g.group_id, g.name
  FROM group_members m JOIN groups g USING (group_id)
 WHERE m.user_id = $1;
