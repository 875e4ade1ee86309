"""Command-line interface. Commands parse options, build configs and call the library; errors
become one line on stderr and an exit code here, in one place.

Nothing here imports torch at module level, so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import os
import sys

import typer

from img2img import __version__
from img2img.cli import _notes

# Importing the command modules registers their commands on the apps.
from img2img.cli import convert as _convert  # noqa: E402,F401
from img2img.cli import data as _data  # noqa: E402,F401
from img2img.cli import eval as _eval  # noqa: E402,F401
from img2img.cli import export as _export  # noqa: E402,F401
from img2img.cli import models as _models  # noqa: E402,F401
from img2img.cli import push as _push  # noqa: E402,F401
from img2img.cli import report as _report  # noqa: E402,F401
from img2img.cli import train as _train  # noqa: E402,F401
from img2img.cli import translate as _translate  # noqa: E402,F401
from img2img.cli._app import app
from img2img.errors import Img2ImgError
from img2img.files.atomic import written_files
from img2img.files.text import one_line
from img2img.runtime import signals as _signals
from img2img.runtime.signals import Interrupted

DEBUG_FLAG = "--debug"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"img2img {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, DEBUG_FLAG, help="Show full tracebacks (also accepted after the command)."),
) -> None:
    """Train and run image-to-image translation GANs (pix2pix, CycleGAN)."""
    # Checked before any command starts, whether or not it reads the class: a typo must not
    # pass unseen (img2img.runtime.devices.cpu_class reads it; this check imports no torch).
    from img2img.runtime.cpu_classes import cpu_class_from_environment

    cpu_class_from_environment()


def error(message: str) -> None:
    # Under torchrun the processes other than rank 0 say which one they are.
    several = os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1")
    rank = os.environ.get("RANK", "0") if several else "0"
    where = f"[rank {rank}] " if rank != "0" else ""
    # One line whatever the message holds (file names with newlines or bytes that are not UTF-8).
    print(f"img2img: error: {where}{one_line(message)}", file=sys.stderr, flush=True)


def _interrupted(exc: Interrupted, written_before: int) -> None:
    """The one line for a stop signal: which signal and what had been written (by this command:
    the files after the first ``written_before`` of this process)."""
    from img2img.files.atomic import remove_registered_temporaries, written_files

    remove_registered_temporaries()
    if exc.summary is not None:
        summary = exc.summary
    else:
        written = written_files()[written_before:]
        summary = (
            "nothing written"
            if not written
            else f"wrote {written[0]}"
            if len(written) == 1
            else f"wrote {len(written)} files, the last {written[-1]}"
        )
    error(f"interrupted by {exc.signal_name}: {summary}; no partial files left")


def _signalled_into(exc: BaseException, written_before: int) -> None:
    """A stop signal that code outside ours turned into another error (an import of onnxruntime
    that fails with "initialization failed", torch's tracer) ends as the signal: the message
    and exit code of an interruption, not a false error with exit 1."""
    signum = _signals.received()
    if signum is not None:
        _interrupted(Interrupted(signum), written_before)
        sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app and turns our typed errors into exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get("IMG2IMG_DEBUG", "") not in ("", "0")
    args = [arg for arg in args if arg != DEBUG_FLAG]
    _notes.install()
    # The stop signals unwind every command alike (img2img.runtime.signals), for its length.
    with _signals.installed():
        written_before = len(written_files())
        try:
            app(args=args, prog_name="img2img")
        except Interrupted as exc:
            if debug:
                raise
            cause = exc.__context__
            if isinstance(cause, Img2ImgError) and not exc.__suppress_context__:
                # The signal came while an error was on its way out (torchrun stops the other
                # processes when one fails): the error is what happened.
                if not getattr(cause, "quiet", False):
                    error(str(cause))
                sys.exit(cause.exit_code)
            _interrupted(exc, written_before)
            sys.exit(exc.exit_code)
        except Img2ImgError as exc:
            if debug:
                raise
            _signalled_into(exc, written_before)
            if not getattr(exc, "quiet", False):  # quiet: rank 0 reports it for every process
                error(str(exc))
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            error("interrupted")
            sys.exit(130)
        except Exception as exc:  # anything unexpected is still one line unless --debug
            if debug:
                raise
            _signalled_into(exc, written_before)
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            error(f"{type(exc).__name__}: {detail} (run again with --debug for the traceback)")
            sys.exit(1)


__all__ = ["app", "main"]
