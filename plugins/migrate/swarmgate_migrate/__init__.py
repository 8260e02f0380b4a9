"""swarmgate-migrate: switch to swarmgate from another gateway's config.

* :func:`migrate` -- convert a config file (``source="litellm"``: a LiteLLM
  proxy ``config.yaml``) into a swarmgate config, checked by the kernel's
  loader; :func:`convert_litellm` does the same on an already parsed document;
* :class:`Migration` -- the result: ``config`` and the ``notes`` on what had
  no equivalent (:class:`Note`);
* :class:`MigrationError` -- the file cannot be read as that format;
* :class:`MigratePlugin` -- the hook plugin (entry point ``migrate``) adding
  ``qwen-swarm-enhanced migrate --from litellm config.yaml [--output ours.json]``.

The public API is exactly ``__all__``.
"""

from swarmgate_migrate.litellm import convert as convert_litellm
from swarmgate_migrate.migrate import SOURCES, migrate, read_source
from swarmgate_migrate.model import Migration, MigrationError, Note
from swarmgate_migrate.plugin import MigratePlugin

__all__ = [
    "SOURCES",
    "MigratePlugin",
    "Migration",
    "MigrationError",
    "Note",
    "convert_litellm",
    "migrate",
    "read_source",
]
