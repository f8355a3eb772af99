"""The NAT lab: field networks rebuilt on one machine with network namespaces."""
