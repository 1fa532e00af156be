-- The live hub processes sharing this database, and which of them runs each server's spawn or
-- stop (issue 20: no process stops or fails another live process's work). Each process holds a
-- row with a lease it renews every third of ``process_lease_s`` (hub/servers/hub_processes.py);
-- a process that dies stops renewing, and once its lease has expired the spawns and stops it
-- claimed are taken up by another (failed or finished as readoption does). At shutdown a
-- process deletes its row, and stops servers (``cleanup_servers``) only if no other process is
-- live. Process state, not hub actions: kept outside the event log, as login failures are.
CREATE TABLE hub_processes (
    process_id  uuid PRIMARY KEY,
    host        text NOT NULL,  -- host name and pid namespace: where pid means this process
    pid         integer NOT NULL,
    started     timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_until timestamptz NOT NULL
);

-- The process that last began a spawn or a stop of each server (written in the transaction
-- that records it). A server in a passing state (spawning, started, stopping) whose claimant
-- is not live has nobody to finish it: the first live process to claim it in its place does.
CREATE TABLE server_claims (
    user_id     uuid NOT NULL,
    server_name text NOT NULL,
    process_id  uuid NOT NULL,
    claimed     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (user_id, server_name)
);
