"""Emptying a host: where each VM goes (placement) and when (schedule); pure."""
