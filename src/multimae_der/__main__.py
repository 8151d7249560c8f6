"""``python -m multimae_der ...`` runs the ``multimae-der`` command line."""

from multimae_der.cli import main

if __name__ == "__main__":
    main()
