"""`antidistill` command line: one module per subcommand (eval/cli/*.py), each with `add_parser`."""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from antidistill.watermark.errors import UserError

# Subcommand modules, in the order `antidistill --help` lists them.
COMMANDS = ("detect", "generate", "train", "grade", "audit", "run", "natural", "evidence", "traffic")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): `antidistill CMD: error: ...`, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="antidistill",
        description="Output countermeasures against distillation: protect, distill, detect, audit.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"antidistill.eval.cli.{name}").add_parser(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"antidistill: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _one_line_warning
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, or a refused argument (its one line is already printed)
        return int(done.code or 0)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"antidistill {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # last resort: a file the read sites did not anticipate
        where = f"{err.filename}: " if err.filename else ""
        print(f"antidistill {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"antidistill {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
