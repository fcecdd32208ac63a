"""Shipped model weights and their cards (data only)."""
