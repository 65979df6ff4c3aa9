"""CPU models: the cluster baseline and guest-vs-destination compatibility."""
