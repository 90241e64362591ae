"""Adapters to outside contact centers (the seed 002 Telephony API over HTTP)."""
