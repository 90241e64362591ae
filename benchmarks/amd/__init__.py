"""Answering machine detection benchmark: our detector against the app_amd baseline."""
