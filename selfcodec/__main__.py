"""``python -m selfcodec``: the selfcodec command line (same as the ``selfcodec`` script)."""

from selfcodec.cli.main import main

if __name__ == "__main__":
    main(prog_name="selfcodec")
