"""Talking to hypervisor hosts: the `Hypervisor` interface (base.py), its records
and errors, and the libvirt driver.  Only this package imports libvirt."""
