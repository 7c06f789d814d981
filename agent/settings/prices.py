"""What the providers charge: a small table an operator can edit (`prices.toml` beside this file, or the file
PRICES_FILE names), read and checked at start-up, and the cost of usage by it.

Each entry prices one item of one provider (`model = "*"`: every model of it not priced apart) at `usd` for
every `per` units, with its source and the day it was read. An item the table does not price costs nothing
and is named in `unpriced`, so a cost line never hides what it left out.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PRICES = Path(__file__).with_name("prices.toml")
ITEMS = (
    "audio_seconds",
    "input_tokens",
    "output_tokens",
    "characters",
    "clone_characters",
    "clones",
    "clone_deletes",
)


class PricesError(ValueError):
    """The price table cannot be read; the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class Price:
    usd_per_unit: float
    source: str
    read_on: str


@dataclass(frozen=True, slots=True)
class Prices:
    date: str = ""  # when the table was last checked against its sources
    entries: dict[tuple[str, str, str], Price] = field(default_factory=dict)  # (provider, model, item)

    def price(self, provider: str, model: str, item: str) -> Price | None:
        return self.entries.get((provider, model, item)) or self.entries.get((provider, "*", item))

    def cost(self, provider: str, model: str, item: str, amount: float) -> float:
        price = self.price(provider, model, item)
        return 0.0 if price is None else amount * price.usd_per_unit


def load_prices(path: Path | None = None) -> Prices:
    """The table at `path` (the bundled one by default), or `PricesError` saying what is wrong in it."""
    path = path or DEFAULT_PRICES
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PricesError(f"PRICES_FILE={path}: cannot be read ({e.strerror or type(e).__name__})") from e
    except tomllib.TOMLDecodeError as e:
        raise PricesError(f"PRICES_FILE={path}: not TOML ({e})") from e
    entries: dict[tuple[str, str, str], Price] = {}
    problems: list[str] = []
    for n, entry in enumerate(table.get("price", []), start=1):
        where = f"price #{n}"
        try:
            provider, model, item = str(entry["provider"]), str(entry.get("model", "*")), str(entry["item"])
            usd, per = float(entry["usd"]), float(entry.get("per", 1))
        except (KeyError, TypeError, ValueError) as e:
            problems.append(f"{where}: needs provider, item and a number usd ({type(e).__name__}: {e})")
            continue
        if item not in ITEMS:
            problems.append(f"{where}: item {item!r} is not one of {', '.join(ITEMS)}")
        elif usd < 0 or per <= 0:
            problems.append(f"{where}: usd must be 0 or more and per more than 0")
        elif (provider, model, item) in entries:
            problems.append(f"{where}: {provider} {model} {item} is priced twice")
        else:
            entries[(provider, model, item)] = Price(
                usd / per, str(entry.get("source", "")), str(entry.get("read_on", ""))
            )
    if problems:
        raise PricesError(f"PRICES_FILE={path}: " + "; ".join(problems))
    return Prices(date=str(table.get("date", "")), entries=entries)
