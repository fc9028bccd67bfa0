"""The retriever: embeds each question, searches Qdrant, publishes the request with its passages."""
