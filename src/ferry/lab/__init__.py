"""A real cluster on one machine: libvirtd hosts in network namespaces."""
