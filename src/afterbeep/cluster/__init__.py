"""Several afterbeep nodes behind Kamailio (issue 23): the proxy's configuration, the
supervisor that runs a cluster on one machine, and what a node does as part of one."""
