"""Command-line front end of selfcodec (installed as selfcodec.cli)."""
