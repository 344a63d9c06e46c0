"""``python -m lightning_pc``: the ``lightning-pc`` command line."""

from lightning_pc.cli import main

if __name__ == "__main__":
    main()
