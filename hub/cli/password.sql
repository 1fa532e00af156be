-- chronohub password.

-- name: any_admin
SELECT EXISTS (SELECT 1 FROM users WHERE admin);
