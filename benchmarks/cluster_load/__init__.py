"""Full deposits through Kamailio into a cluster of afterbeep nodes (issue 23)."""
