"""The proxy in front of the hub: its route table, the built-in proxy, the
configurable-http-proxy adapter, and the follower that keeps either one's routes in step with
the routes read model."""
