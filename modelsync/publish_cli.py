"""`modelsync publish`: upload a directory as a new revision (modelsync.publish does
the work), gated, signed and registered as its flags say."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelsync.cliopts import gate_options, gates_from_flags, key_values
from modelsync.errors import ConfigError

if TYPE_CHECKING:
    from modelsync.gates import GatesConfig

__all__ = ["publish"]


@click.command()
@click.argument("src_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("url")
@click.option("--version", "version", type=click.IntRange(min=1), help="Default: Unix time now.")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=NUMBER")
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE")
@click.option(
    "--sign-key",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Private key (PEM). Ed25519: upload a signature of the manifest; EC "
    "(P-256/384/521): upload an OpenSSF Model Signing model.sig (signed as "
    "<model>-<version>) instead of a manifest.",
)
@click.option(
    "--sign-cert",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="With an EC --sign-key: its X.509 certificate (PEM), for the certificate method.",
)
@click.option(
    "--sign-chain",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="With --sign-cert: intermediate certificates (PEM) to put in model.sig.",
)
@click.option(
    "--source-option",
    "source_option",
    multiple=True,
    metavar="KEY=VALUE",
    help="A [models.source_options] key of URL's backend (e.g. endpoint_url=...).",
)
@gate_options
@click.option("--channel", help="The channel whose stable version is `production` for --gate.")
@click.option(
    "--smoke",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Smoke requests (JSON) put in the revision as modelsync-smoke.json.",
)
@click.option(
    "--mlflow",
    "mlflow_url",
    metavar="mlflow+http://HOST:PORT/MODEL[@ALIAS]",
    help="Then register the revision as a version of MODEL in MLflow's Model Registry "
    "(and point ALIAS at it).",
)
@click.option(
    "--mlflow-run",
    metavar="RUN_ID",
    help="The MLflow run whose artifacts hold URL (MLflow requires one for file:// URLs).",
)
def publish(
    src_dir: Path,
    url: str,
    version: int | None,
    metrics: tuple[str, ...],
    meta: tuple[str, ...],
    sign_key: Path | None,
    sign_cert: Path | None,
    sign_chain: tuple[Path, ...],
    source_option: tuple[str, ...],
    gate: tuple[str, ...],
    baseline: int | None,
    if_missing: str,
    channel: str | None,
    smoke: Path | None,
    mlflow_url: str | None,
    mlflow_run: str | None,
) -> int:
    """Upload SRC_DIR as a new revision under URL (manifest last); print the version."""
    from modelsync.progress import LoggedProgress, terminal_progress
    from modelsync.publish import publish as publish_revision
    from modelsync.sources import check_source
    from modelsync.suggest import schemeless_url_hint

    metric_map = key_values(metrics, "--metric", number=True)
    meta_map = key_values(meta, "--meta", number=False)
    options = key_values(source_option, "--source-option", number=False)
    hint = schemeless_url_hint(url)
    if hint is not None:
        raise click.BadParameter(hint, param_hint="URL")
    try:
        url, _ = check_source(url, options)  # the backend's own rules, before any upload
    except ValueError as exc:
        # A URL of a known form with a bad option: one line, as for the config file.
        raise ConfigError(str(exc)) from exc
    gates = gates_from_flags(gate, baseline, if_missing)
    if gates is not None:
        _publish_gate(url, options, channel, gates, metric_map, version)
    if mlflow_url is not None:
        from modelsync.backends.mlflow import parse_mlflow_url

        try:
            parse_mlflow_url(mlflow_url)  # before any upload
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--mlflow") from None
    published = publish_revision(
        src_dir,
        url,
        version=version,
        metrics=metric_map,
        metadata=meta_map,
        sign_key=sign_key,
        sign_cert=sign_cert,
        sign_chain=sign_chain,
        smoke=smoke,
        source_options=options,
        # A bar for a person at a terminal; a line every 10 s in a pipeline's log.
        progress=terminal_progress
        if sys.stderr.isatty()
        else LoggedProgress(event="upload progress"),
    )
    if mlflow_url is not None:
        import structlog

        from modelsync.mlflow_registry import register

        registered = register(mlflow_url, f"{url}/{published}", run_id=mlflow_run)
        structlog.get_logger().info(
            "registered in MLflow",
            registry=mlflow_url,
            registry_version=registered,
            version=published,
        )
    click.echo(published)
    return 0


def _publish_gate(
    url: str,
    options: dict[str, str],
    channel: str | None,
    gates: GatesConfig,
    metrics: dict[str, float],
    version: int | None,
) -> None:
    """Refuse (RefusedError, nothing uploaded) metrics that fail ``gates`` against the
    channel's stable revision and the baseline."""
    from modelsync.cancel import CancelToken
    from modelsync.channel_gate import judge, require
    from modelsync.sources import open_source

    source = open_source(url, options)
    try:
        verdict = judge(source, channel, gates, metrics, version, CancelToken())
    finally:
        source.close()
    require(verdict, f"{url}: new revision")
