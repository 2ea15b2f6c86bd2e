"""The JSON format shared by the model catalog and the chat modes: a top-level list of
entries keyed by `id`, each with typed fields, and `replace` for override files."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EntryFormat:
    key: str  # the list's key: "models", "modes"
    noun: str  # one entry, in messages: "model", "mode"
    required: Sequence[str]
    fields: Collection[str]  # every field an entry may have
    convert: Callable[[str, object], object]  # typed value of one field, or ValueError

    def parse(
        self, raw: object, where: str, *, complete: bool
    ) -> tuple[list[dict[str, Any]], bool]:
        """Validate a document; returns (typed fields per entry, replace).

        With `complete`, every entry must carry all required fields; otherwise only
        `id` (an override may change a single field of a known entry)."""
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a JSON object with a '{self.key}' list")
        unknown = {k for k in raw if k not in (self.key, "replace") and not k.startswith("_")}
        if unknown:
            raise ValueError(f"{where}: unknown top-level keys {sorted(unknown)}")
        entries = raw.get(self.key)
        if not isinstance(entries, list):
            raise ValueError(f"{where}: '{self.key}' must be a list")
        replace = raw.get("replace", False)
        if not isinstance(replace, bool):
            raise ValueError(f"{where}: 'replace' must be true or false")
        parsed: list[dict[str, Any]] = []
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            fields = self.entry(entry, f"{where}: {self.key}[{index}]")
            needed = self.required if complete else ("id",)
            missing = [name for name in needed if name not in fields]
            if missing:
                raise ValueError(f"{where}: {self.key}[{index}] is missing {', '.join(missing)}")
            if fields["id"] in seen:
                raise ValueError(f"{where}: {self.noun} {fields['id']!r} is listed twice")
            seen.add(fields["id"])
            parsed.append(fields)
        return parsed, replace

    def entry(self, entry: object, where: str) -> dict[str, Any]:
        """Typed values of the fields present in one entry."""
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object")
        unknown = {k for k in entry if k not in self.fields and not k.startswith("_")}
        if unknown:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
        label = f"{where} ({entry['id']!r})" if isinstance(entry.get("id"), str) else where
        fields: dict[str, Any] = {}
        for name, value in entry.items():
            if name.startswith("_"):
                continue
            try:
                fields[name] = self.convert(name, value)
            except ValueError as exc:
                raise ValueError(f"{label}: {name} {exc}") from None
        return fields
