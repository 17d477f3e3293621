"""The bundled community price snapshot: LiteLLM's price table converted into advisor's price
entries at build time (`advisor prices import --snapshot`), shipped as
rules/prices/community/litellm.json.

It is the broad fallback behind the curated table: `PriceTable` resolves a logged name against the
curated entries and `--prices` files first, and only a name none of them resolves reaches the
snapshot. Entries stay raw JSON until a name resolves to them, so the thousands of models cost one
`json.loads` per run, not one validation each. The file holds one entry per line (diffable) after
a header naming its source, the source's version, the date it was taken and the command that made
it; the raw LiteLLM file itself is never shipped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import RuleError
from advisor.pricing import ModelPrice, strip_name

SNAPSHOT_KIND = "prices-snapshot"
SNAPSHOT_PATH = Path("prices/community/litellm.json")  # under the rules folder
_PER_FILE = {"title", "source", "retrieved"}  # the same for every entry: kept in the header only


@dataclass(frozen=True)
class CommunitySnapshot:
    """Raw entries by key, and the lower-cased name indexes `PriceTable` resolves against."""

    name: str
    source: str
    version: str
    retrieved: dt.date
    command: str
    digest: str  # sha256 of the file: the table digest changes when the snapshot does
    entries: dict[str, dict[str, Any]]
    ids: dict[str, str]
    aliases: dict[str, str]

    @property
    def label(self) -> str:
        return f"community snapshot of {self.retrieved.isoformat()}"

    def provider(self, key: str) -> str | None:
        return self.entries[key].get("provider")

    def model(self, key: str) -> ModelPrice:
        """Validate one entry (on first use only)."""
        fill = {"title": key, "source": self.source, "retrieved": self.retrieved}
        return ModelPrice.model_validate({**fill, **self.entries[key]})


def load_snapshot(rules_dir: Path) -> CommunitySnapshot | None:
    """The snapshot under `rules_dir`, or None where the folder has none (a custom rules folder)."""
    path = rules_dir / SNAPSHOT_PATH
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        doc = json.loads(data)
        if doc.get("kind") != SNAPSHOT_KIND:
            raise ValueError(f"kind is {doc.get('kind')!r}, not {SNAPSHOT_KIND!r}")
        entries = {m["id"]: m for m in doc["models"]}
        retrieved = dt.date.fromisoformat(doc["retrieved"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RuleError(
            f"{path}: not a price snapshot: {exc}", hint="regenerate it, see README (Prices)"
        ) from exc
    aliases = {a.lower(): key for key, m in entries.items() for a in m.get("aliases", ())}
    return CommunitySnapshot(
        name=str(SNAPSHOT_PATH),
        source=doc["source"],
        version=doc["version"],
        retrieved=retrieved,
        command=doc["command"],
        digest=hashlib.sha256(data).hexdigest(),
        entries=entries,
        ids={key.lower(): key for key in entries},
        aliases=aliases,
    )


def link_variants(models: Sequence[ModelPrice]) -> list[ModelPrice]:
    """Mark each entry whose name, without its host prefix or date, is another entry's id as a
    variant (`base`) of it, as `load_prices` does for a --prices file: `azure/o3-mini` and
    `o3-mini-2025-01-31` climb o3-mini's tier ladder."""
    ids = {m.id.lower(): m.id for m in models}
    linked = []
    for m in models:
        base = ids.get(strip_name(m.id.lower()))
        linked.append(m.model_copy(update={"base": base}) if base and base != m.id else m)
    return linked


def snapshot_command(source_name: str, version: str, retrieved: dt.date) -> str:
    """The command that regenerates the snapshot from the repository root (the header's)."""
    return shlex.join(
        ["advisor", "prices", "import", f"../shared/data/prices/{source_name}", "--snapshot",
         version, "--retrieved", retrieved.isoformat(), "-o", f"rules/{SNAPSHOT_PATH}"]
    )  # fmt: skip


def write_snapshot(
    models: Sequence[ModelPrice],
    path: Path,
    *,
    source: str,
    version: str,
    retrieved: dt.date,
    command: str,
    entries: int,
) -> None:
    """Write the snapshot: a header, then one entry per line, in the import's order."""
    header = {
        "kind": SNAPSHOT_KIND,
        "source": source,
        "version": version,
        "retrieved": retrieved.isoformat(),
        "command": command,
        "source_entries": entries,
        "generated": "do not edit: regenerate with the command above",
    }
    lines = [
        json.dumps(
            m.model_dump(mode="json", exclude_none=True, exclude_defaults=True, exclude=_PER_FILE),
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for m in link_variants(models)
    ]
    head = json.dumps(header, indent=1, ensure_ascii=False)[:-2]  # reopen the object for models
    text = head + ',\n "models": [\n' + ",\n".join(lines) + "\n ]\n}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
