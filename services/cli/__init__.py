"""``relay``, the command-line client: it talks to the services only through their HTTP APIs."""
