-- chronohub's role and database on a PostgreSQL server (Debian's postgresql package).
-- Run as the server's superuser, with the role's password as a psql variable:
--
--   sudo -u postgres psql -v ON_ERROR_STOP=1 -v password="$(cat /etc/chronohub/db_password)" \
--       -f postgres-setup.sql
--
-- chronohub needs no superuser and no extension: it owns its database and creates its
-- tables there (migrations, at start-up).

CREATE ROLE chronohub LOGIN PASSWORD :'password';
-- template0 and UTF8: the hub stores users' text (names, notes, notebook sources) as UTF-8
-- whatever the server's locale.
CREATE DATABASE chronohub OWNER chronohub ENCODING 'UTF8' TEMPLATE template0;
-- Only chronohub (and superusers) may connect.
REVOKE ALL ON DATABASE chronohub FROM PUBLIC;
