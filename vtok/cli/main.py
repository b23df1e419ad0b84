"""Entry point of the `vtok` command."""

from __future__ import annotations

import argparse
import sys
import warnings

from tqdm import tqdm

from ..networks.video_streams import AttentionHorizonWarning
from ..version import __version__
from . import (
    autoencode,
    decode,
    demo,
    download_checkpoints,
    download_hdvila,
    encode,
    evaluate,
    export_jit,
    index,
    inspect_cmd,
    models,
    train,
)
from .train import ONE_LINE_ERRORS

COMMANDS = (
    demo,
    download_checkpoints,
    download_hdvila,
    index,
    train,
    autoencode,
    encode,
    decode,
    evaluate,
    models,
    inspect_cmd,
    export_jit,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vtok",
        description="Post-train and use NVIDIA's Cosmos-Tokenize1 video tokenizers.",
    )
    parser.add_argument("--version", action="version", version=f"vtok {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


class _HorizonNote:
    """Say once per command, in one line, that a stream went past its attention horizon; other warnings as usual."""

    def __init__(self) -> None:
        self.previous = warnings.showwarning
        self.said = False

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if not issubclass(category, AttentionHorizonWarning):
            self.previous(message, category, filename, lineno, file, line)
        elif not self.said:
            self.said = True
            tqdm.write(
                f"vtok: note: {message}; on the command line: --attention_horizon all (or a larger number), which "
                "costs memory; token files record `exact` (said once per run)",
                file=sys.stderr,
            )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", AttentionHorizonWarning)
            warnings.showwarning = _HorizonNote()
            return args.func(args)
    except ONE_LINE_ERRORS as err:
        print(f"vtok: error: {str(err).strip(chr(39))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:  # Interrupted and the trainer's StoppedWithoutSaving say what was kept
        kept = str(stop) or "files vtok finished are complete; none is left half written under its name"
        print(f"vtok: interrupted: {kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
