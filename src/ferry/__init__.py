"""Ferry: safe, predictable live migration of KVM virtual machines."""

__version__ = "0.1.0"
