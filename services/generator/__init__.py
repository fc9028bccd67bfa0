"""The generator: streams answers from an OpenAI-compatible model into ordered delta and lifecycle events."""
