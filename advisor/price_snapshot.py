"""The bundled community price snapshot: LiteLLM's price table converted into advisor's price
entries at build time (`advisor prices import --snapshot`), shipped as
rules/prices/community/litellm.json.

It is the broad fallback behind the curated table: `PriceTable` resolves a logged name against the
curated entries and `--prices` files first, and only a name none of them resolves reaches the
snapshot. There one name has many hosts' entries; `CommunitySnapshot.preferred` picks the host the
log names, else the family's owner (rules/prices/community/owners.yaml), never the file's order.
Entries stay raw JSON until a name resolves to them, so the thousands of models cost one
`json.loads` per run, not one validation each. The file holds one entry per line (diffable) after
a header naming its source, the source's version, the date it was taken and the command that made
it; the raw LiteLLM file itself is never shipped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shlex
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from advisor.errors import RuleError
from advisor.pricing import ModelPrice, Resolution, same_provider, strip_name, strip_prefixes
from advisor.ruleset import load_model

SNAPSHOT_KIND = "prices-snapshot"
SNAPSHOT_PATH = Path("prices/community/litellm.json")  # under the rules folder
OWNERS_PATH = Path("prices/community/owners.yaml")


class Owner(BaseModel):
    """A model family and the hosts that sell it first-hand, most direct first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    pattern: str
    providers: tuple[str, ...]
    rationale: str
    examples: dict[str, str] = {}

    def owns(self, plain: str) -> bool:
        return re.match(self.pattern, plain) is not None


class Owners(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    kind: Literal["price_owners"]
    source: str
    owners: tuple[Owner, ...]


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
    # keys by the name without host prefix (`plain`), and without its date too (`undated`)
    plain: dict[str, tuple[str, ...]]
    undated: dict[str, tuple[str, ...]]
    owners: tuple[Owner, ...]

    @property
    def label(self) -> str:
        return f"community snapshot of {self.retrieved.isoformat()}"

    def provider(self, key: str) -> str | None:
        return self.entries[key].get("provider")

    def preferred(self, name: str, provider: str | None) -> Resolution | None:
        """The entry a lower-cased logged name means when several hosts list it: the logged
        provider's, else the first of the family owner's providers that has one; None where the
        log names the host by prefix, or neither rule decides (the exact rules then apply).

        Entries with the name itself come first, then those of the name's other dates
        (claude-3-7-sonnet -> its -20250219 snapshot), newest first; among one host's copies the
        shortest id wins (`anthropic.<id>` before the regional `us.anthropic.<id>`)."""
        plain = strip_prefixes(name)
        if plain != name and (name in self.ids or name in self.aliases):
            return None
        owner = next((o for o in self.owners if o.owns(plain)), None)
        hosts = ((provider,) if provider else ()) + (owner.providers if owner else ())
        for pool, how in ((self.plain, "exact"), (self.undated, "alias")):
            keys = pool.get(plain if how == "exact" else strip_name(plain), ())
            for host in hosts:
                mine = [k for k in keys if same_provider(self.provider(k), host)]
                if mine:
                    mine.sort(key=lambda k: (len(k), k))
                    mine.sort(key=lambda k: self._plain_of(k), reverse=True)  # stable: newest
                    return Resolution(mine[0], "exact" if mine[0] == name else "alias")
        return None

    def _plain_of(self, key: str) -> str:
        return _plain(key.lower(), self.provider(key))

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
    plain: defaultdict[str, dict[str, None]] = defaultdict(dict)
    undated: defaultdict[str, dict[str, None]] = defaultdict(dict)
    for key, m in entries.items():
        for name in (key, *m.get("aliases", ())):
            bare = _plain(name.lower(), m.get("provider"))
            plain[bare][key] = None
            undated[strip_name(bare)][key] = None
    owners_path = rules_dir / OWNERS_PATH
    owners = load_model(owners_path, Owners).owners if owners_path.is_file() else ()
    if owners:  # what a plain name resolves to is part of the prices used
        data += owners_path.read_bytes()
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
        plain={name: tuple(keys) for name, keys in plain.items()},
        undated={name: tuple(keys) for name, keys in undated.items()},
        owners=owners,
    )


def _plain(name: str, provider: str | None) -> str:
    """A lower-cased entry name without its own host's prefix (mistral/, together_ai/) and
    without the prefixes a log may carry (azure/, us.anthropic.<id>-v1:0)."""
    head, _, rest = name.partition("/")
    if rest and same_provider(provider, head):
        name = rest
    return strip_prefixes(name)


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
