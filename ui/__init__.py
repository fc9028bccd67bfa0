"""The Streamlit chat of llm-relay: ``streamlit run ui/app.py``."""
