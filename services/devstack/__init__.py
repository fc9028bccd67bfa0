"""Local parts for development and tests: nats-server, PostgreSQL, the offline model server.

The same classes start the stack behind ``relay up`` and the throw-away servers of the test suite.
"""
