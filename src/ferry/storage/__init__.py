"""Storage: which pool a disk lives in, how hosts define pools, and whether a disk
is shared between two hosts or must be copied."""
