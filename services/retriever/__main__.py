"""``python -m services.retriever`` runs the retriever (consumer + probes + document API)."""

from services.retriever.app import main

main()
