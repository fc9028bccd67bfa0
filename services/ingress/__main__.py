"""``python -m services.ingress`` runs the ingress API."""

from services.ingress.app import main

main()
