"""Options shared by the command modules (cli.py, release_cli.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["config_option"]


def config_option(help_text: str) -> Callable[[Any], Any]:
    """--config FILE (MODELSYNC_CONFIG), passed to the command as ``config_path``."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        envvar="MODELSYNC_CONFIG",
        help=help_text,
    )
