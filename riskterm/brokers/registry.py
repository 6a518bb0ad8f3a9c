"""`--source NAME[:ARG]`: the built-in brokers and the plugins (CONTRACT §3, §9).

A plugin is a package that declares an entry point in the group `riskterm.brokers`, named
NAME, pointing at a factory: a callable that takes a `BrokerContext` (its `arg` is the ARG of
`--source NAME:ARG`) and returns a broker (riskterm.brokers.base.Broker). Built-in names come
first: a plugin cannot take `sim`, `projectx`, `replay` or `-`.
"""

from __future__ import annotations

import functools
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points

from riskterm.brokers.base import BrokerFactory

GROUP = "riskterm.brokers"
BUILTIN = {
    "sim": "riskterm.brokers.sim:make",
    "projectx": "riskterm.brokers.projectx.adapter:make",
}
REPLAYS = ("replay", "-")


class UnknownSource(Exception):
    """--source names no broker riskterm knows; the message lists the ones it does."""


def split(source: str) -> tuple[str, str | None]:
    """'-' → ('-', None); 'replay:PATH' → ('replay', 'PATH'); 'NAME:ARG' → ('NAME', 'ARG')."""
    if source == "-":
        return "-", None
    name, sep, arg = source.partition(":")
    return name, (arg if sep else None)


@functools.cache  # a scan of every installed distribution's metadata: once per process
def plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    return [*BUILTIN, "replay:PATH", "-", *sorted(set(plugins()) - set(BUILTIN))]


def check(source: str) -> None:
    """Raise UnknownSource unless `source` names a replay, a built-in broker or a plugin."""
    name, arg = split(source)
    if name in REPLAYS:
        if name == "replay" and not arg:
            raise UnknownSource("--source replay needs a path: --source replay:PATH")
        return
    if name in BUILTIN or name in plugins():
        return
    raise UnknownSource(f"--source {name}: no broker of that name (known: "
                        + ", ".join(names()) + "; plugins declare an entry point in the group "
                        f"'{GROUP}')")


def factory(name: str) -> BrokerFactory:
    """The factory of a built-in broker or a plugin. Raises UnknownSource, or ImportError
    (with the plugin's own message) when a plugin cannot be loaded."""
    target = BUILTIN.get(name)
    if target is not None:
        module, _, attr = target.partition(":")
        return getattr(import_module(module), attr)  # type: ignore[no-any-return]
    ep = plugins().get(name)
    if ep is None:
        raise UnknownSource(f"--source {name}: no broker of that name")
    loaded = ep.load()
    if not callable(loaded):
        raise UnknownSource(f"--source {name}: the entry point {ep.value} is not callable")
    return loaded  # type: ignore[no-any-return]
