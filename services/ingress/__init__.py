"""Ingress: validates questions and publishes them to JetStream; answers 202 once they are durable."""
