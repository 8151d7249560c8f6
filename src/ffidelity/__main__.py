"""``python -m ffidelity ...`` runs the ``ffidelity`` command line."""

from ffidelity.cli import main

if __name__ == "__main__":
    main()
