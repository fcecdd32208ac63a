"""``python -m selfcodec``: the selfcodec command line (same as the ``selfcodec`` script)."""

import sys


def load_cli():
    """The ``selfcodec.cli.main`` module, also from an uninstalled source checkout."""
    try:
        import selfcodec.cli.main  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name not in ("selfcodec.cli", "selfcodec.cli.main"):
            raise
        # Running from a source checkout that is not installed: setup.cfg maps the
        # repository folder cli/ to selfcodec.cli; do the same mapping by hand.
        import importlib.util
        from pathlib import Path

        import selfcodec

        cli_dir = Path(__file__).resolve().parent.parent / "cli"
        spec = importlib.util.spec_from_file_location(
            "selfcodec.cli", cli_dir / "__init__.py", submodule_search_locations=[str(cli_dir)]
        )
        if spec is None or spec.loader is None or not (cli_dir / "main.py").is_file():
            raise
        module = importlib.util.module_from_spec(spec)
        sys.modules["selfcodec.cli"] = module
        spec.loader.exec_module(module)
        selfcodec.cli = module
    import importlib

    return importlib.import_module("selfcodec.cli.main")


if __name__ == "__main__":
    load_cli().main(prog_name="selfcodec")
