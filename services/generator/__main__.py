"""``python -m services.generator``."""

from services.generator.app import main

main()
