"""KServe's flags plus ours: each field of a settings class (``audio_maas.serving.settings``) is
also a command-line flag, which wins over its environment variable."""

from __future__ import annotations

import argparse
from typing import TypeVar

from pydantic_settings import BaseSettings

from audio_maas.protocol.defaults import DEFAULT_MODEL_NAME

__all__ = ["parse_flags"]

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def parse_flags(
    settings_class: type[SettingsT], *, description: str | None, argv: list[str] | None
) -> tuple[argparse.Namespace, SettingsT]:
    """KServe's own flags plus ``--<field>`` for each settings field, which wins over its
    environment variable. Invalid values fail here, naming the setting (pydantic)."""
    from kserve import model_server  # KServe's flags; imported here so that clients need not import KServe

    parser = argparse.ArgumentParser(parents=[model_server.parser], description=description)
    # KServe logs three lines of timings per request by default; /metrics has the same figures.
    parser.set_defaults(enable_latency_logging=False, model_name=DEFAULT_MODEL_NAME)
    for name, field in settings_class.model_fields.items():
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS if field.validation_alias else field.description)
    args, _ = parser.parse_known_args(argv)
    flags = {name: getattr(args, name) for name in settings_class.model_fields if getattr(args, name) is not None}
    for name, field in settings_class.model_fields.items():
        if field.validation_alias and name in flags:  # a secret: every user of the machine can read flags in `ps`
            parser.error(f"--{name} is not accepted on the command line; set {field.validation_alias} instead")
    return args, settings_class(**flags)
