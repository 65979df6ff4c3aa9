"""Talking to hypervisor hosts.  Only this package imports libvirt."""
