"""The end-to-end demo behind ``make demo``."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo-output")
    parser.parse_args(argv)
    raise SystemExit("the demo is not written yet")


if __name__ == "__main__":
    main()
