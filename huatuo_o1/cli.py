"""What every entry point shares: boolean flags, flags from a dataclass, `--help` that imports no
training library, and the exit-code contract (`run_main`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
import threading
import typing
from collections.abc import Awaitable, Callable, Iterable

from huatuo_o1.io import InputError, OutputError

EXIT_BAD_INPUT = 2


def str2bool(value: str | bool) -> bool:
    """argparse type for `--flag True|False` (the original used `type=bool`, so "False" was True)."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("1", "true", "t", "yes", "y", "on"):
        return True
    if v in ("0", "false", "f", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False), got {value!r}")


def add_dataclass_args(parser, cls, exclude: Iterable[str] = (), choices: dict | None = None) -> None:
    """One `--<field>` flag per field of the dataclass `cls` (name, default and help from its
    declaration), so a setting is declared once. bool fields take True/False (`str2bool`);
    `X | None` fields take an X or the word None; `choices` maps a field name to its allowed values."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        kind = hints[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if args:  # X | None
            kind = args[0]
        kwargs = {"type": str2bool if kind is bool else kind, "help": f.metadata.get("help")}
        if args and kind is not bool:
            kwargs["type"] = _or_none(kind)
        if f.default is not dataclasses.MISSING:
            kwargs["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kwargs["default"] = f.default_factory()
        if choices and f.name in choices:
            kwargs["choices"] = choices[f.name]
        parser.add_argument(f"--{f.name}", **kwargs)


def _or_none(kind):
    """argparse type of an `X | None` flag: the word None, else an X."""

    def convert(text: str):
        return None if text == "None" else kind(text)

    convert.__name__ = getattr(kind, "__name__", "value")  # argparse names the type in its errors
    return convert


HELP_ALL = "--help_all"


def dataclass_parser(description: str, *classes, epilog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser of our own argument dataclasses: the training scripts' `--help`, built
    without importing torch or transformers. Their real parsing (`HfArgumentParser` over trl's and
    transformers' argument classes too) imports both; `--help_all` shows that parser's help."""
    p = argparse.ArgumentParser(
        description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(HELP_ALL, action="store_true", help="List every flag, trl's and transformers' included.")
    for cls in classes:
        add_dataclass_args(p, cls)
    return p


def print_help_if_asked(argv: list[str], make_parser: Callable, make_full_parser: Callable) -> bool:
    """`--help_all`: the full parser's help; `-h`/`--help`: the light one's. True when help was shown."""
    if HELP_ALL in argv:
        make_full_parser().print_help()
        return True
    if "-h" in argv or "--help" in argv:
        make_parser().print_help()
        return True
    return False


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM and `kill` send) received: stops the run the way Ctrl-C does."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _install_sigterm() -> None:
    """SIGTERM raises `Terminated` in the main thread, so the run unwinds like Ctrl-C (results written
    so far stay, locks are released, one line is printed). A handler someone else installed is kept."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL,
        None,
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def run_main(main: Callable[[], int | None]) -> None:
    """Run a script's main(): known user errors become one stderr line (URL credentials and `sk-` keys
    masked) and exit code 2; Ctrl-C and SIGTERM stop with one line on what is kept and how to resume."""
    # local import: importing cli alone does not pull in `openai`
    from huatuo_o1.llm import FatalAPIError
    from huatuo_o1.redact import mask_secrets

    _install_sigterm()
    try:
        code = main()
    except (InputError, OutputError, FatalAPIError) as e:
        print(f"error: {mask_secrets(' '.join(str(e).split()))}", file=sys.stderr)  # one line, no credentials
        exit_process(EXIT_BAD_INPUT)
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"{how}: results written so far are kept; rerun the same command to resume", file=sys.stderr)
        exit_process(143 if isinstance(e, Terminated) else 130)
    exit_process(code or 0)


def exit_process(code: int) -> typing.NoReturn:
    """End the script with `code`. A process of a distributed launch (torchrun / `accelerate launch`
    set LOCAL_RANK) that imported torch.distributed skips the interpreter's teardown: its
    collective backend (gloo) can still hold worker threads and tensors that the teardown frees after
    Python is half gone, which aborts a finished run now and then ("terminate called without an
    active exception", SIGABRT) and makes the launcher report it as failed. Everything the teardown
    would have saved is saved first: the process group closed, an open wandb run finished, log
    handlers and stdout/stderr flushed."""
    if "LOCAL_RANK" not in os.environ or "torch.distributed" not in sys.modules:
        sys.exit(code)
    try:
        dist = sys.modules["torch.distributed"]
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        wandb = sys.modules.get("wandb")
        if wandb is not None and getattr(wandb, "run", None) is not None:
            wandb.finish(exit_code=code)
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed or broken pipe has nothing left to save
                pass
        os._exit(code)


# What the libraries say on every RL run about their own internal calls, with nothing for the user
# to change: trl's PPO passes a generation config together with generation arguments, and a
# one-process run reports the layers it did not shard across processes.
LIBRARY_NOISE = {
    "transformers.generation.utils": "Passing `generation_config` together with generation-related arguments",
    "transformers.distributed.tensor_parallel": "The following layers were not sharded",
}


class _DropMessage(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def setup_training_logging() -> None:
    """INFO logs with timestamps for the training scripts, without accelerate's per-step chatter or
    the library notices in LIBRARY_NOISE (filtered in our entry points only)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    for name, start in LIBRARY_NOISE.items():
        logging.getLogger(name).addFilter(_DropMessage(start))


def run_async_stage(run: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    """main() of an API stage: warnings-level logging, then the stage's coroutine; its exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_coroutine(run(args))


def run_coroutine(coro: Awaitable):
    """asyncio.run, with SIGTERM handled by the event loop: it cancels the run's task, so every
    request in flight unwinds as cancelled (no half-sent request's task left with an exception to
    report), and then stops the run like Ctrl-C (`Terminated`). The process's own SIGTERM handler is
    restored afterwards."""

    async def guarded():
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        signalled = []
        previous = signal.getsignal(signal.SIGTERM)
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            loop.add_signal_handler(signal.SIGTERM, lambda: (signalled.append(True), task.cancel()))
        try:
            return await coro
        except asyncio.CancelledError:
            if signalled:
                raise Terminated() from None
            raise
        finally:
            if in_main:
                loop.remove_signal_handler(signal.SIGTERM)
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    return asyncio.run(guarded())
