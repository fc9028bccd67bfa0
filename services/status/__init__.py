"""The status service: folds every event into PostgreSQL and serves the polling API."""
