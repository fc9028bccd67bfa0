"""``python -m services.cli`` is the ``relay`` command."""

from services.cli.main import main

main()
