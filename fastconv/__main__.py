"""``python -m fastconv info``: the self-report (fastconv.info); bug reports ask for it."""

import sys

from fastconv.info import show_config


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if args != ["info"]:
        print("usage: python -m fastconv info    (what this installation is and can do; bug reports ask for it)", file=sys.stderr)
        return 2
    show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
