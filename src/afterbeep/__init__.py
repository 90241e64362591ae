"""afterbeep: a self-hosted voicemail platform."""

__version__ = "0.1.0"
