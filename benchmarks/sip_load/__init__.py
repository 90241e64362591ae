"""SIPp-driven load benchmark of afterbeep's SIP service (127.0.0.1 only, bounded in count and time)."""
