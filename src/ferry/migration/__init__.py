"""The migration engine: prechecks, the monitored libvirt job, outcome and cleanup."""
