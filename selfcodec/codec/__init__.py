"""Entropy coding and the .svae container."""
