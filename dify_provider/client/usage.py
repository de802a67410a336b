"""What a Dify run or message spent, added up from what Dify reports, and the budget it must stay in.

Dify reports spend in three places, none complete on its own:

- each ``node_finished`` event: ``execution_metadata.total_tokens``, ``total_price`` (a
  ``Decimal`` serialised as a string) and ``currency`` for nodes that called a model (LLM,
  knowledge retrieval, agent, ...); an LLM node's ``outputs.usage`` (or ``process_data.usage``)
  also splits the tokens into prompt and completion;
- ``message_end`` of a chat-family stream: the message's whole ``usage`` (tokens split, prices);
- the run itself (``workflow_finished``, ``GET /workflows/run/{id}``): ``total_tokens`` only,
  and Dify 1.13 writes it into the run's record only when the run ends.

A :class:`UsageMeter` keeps the largest figure any source gave (sources agree when all are
there; taking the largest never under-counts a budget) and leaves out what no source said:
a polled run has no price and no prompt/completion split, and none is made up. Prices are
added as :class:`~decimal.Decimal` and reported as plain decimal strings, so no cent is lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from dify_provider.client import errors as e

if TYPE_CHECKING:  # events are told apart by name: a DAG file importing an operator loads no models
    from dify_provider.client.models import StreamEvent

#: The events that may carry spend; every other kind is passed over at once.
_SPENDING_EVENTS = frozenset({"node_finished", "message_end", "workflow_finished"})
#: ``max_total_price``'s form: an amount and the ISO currency the app's model prices are in.
_PRICE = re.compile(r"^\s*(?P<amount>\d+(?:\.\d+)?)\s+(?P<currency>[A-Za-z]{3})\s*$")


def decimal_text(value: Decimal) -> str:
    """``Decimal`` as a plain string (``"0.0000012"``, never ``"1.2E-6"``)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _price(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        price = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return price if price.is_finite() and price >= 0 else None


def _tokens(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@dataclass
class NodeUsage:
    """What one node reported when it finished (only nodes that spent something are kept)."""

    node_id: str
    title: str
    node_type: str
    total_tokens: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_price: Decimal | None = None
    currency: str | None = None
    elapsed_time: float | None = None

    @classmethod
    def from_event(cls, event: StreamEvent) -> NodeUsage | None:
        data = event.data
        metadata = data.get("execution_metadata") or {}
        if not isinstance(metadata, dict):
            return None
        tokens, price = _tokens(metadata.get("total_tokens")) or 0, _price(metadata.get("total_price"))
        if not tokens and not price:
            return None
        node = cls(node_id=str(data.get("node_id") or ""), title=str(data.get("title") or ""),
                   node_type=str(data.get("node_type") or ""), total_tokens=tokens, total_price=price,
                   currency=metadata.get("currency") if isinstance(metadata.get("currency"), str) else None,
                   elapsed_time=data.get("elapsed_time") if isinstance(data.get("elapsed_time"), int | float) else None)
        for where in ("outputs", "process_data"):  # an LLM node's usage, split (absent when truncated)
            usage = (data.get(where) or {}).get("usage") if isinstance(data.get(where), dict) else None
            if isinstance(usage, dict) and _tokens(usage.get("prompt_tokens")) is not None:
                node.prompt_tokens = usage["prompt_tokens"]
                node.completion_tokens = _tokens(usage.get("completion_tokens"))
                break
        return node

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node_id": self.node_id, "title": self.title, "node_type": self.node_type,
                               "total_tokens": self.total_tokens}
        if self.prompt_tokens is not None and self.completion_tokens is not None:
            out["prompt_tokens"], out["completion_tokens"] = self.prompt_tokens, self.completion_tokens
        if self.total_price is not None:
            out["total_price"], out["currency"] = decimal_text(self.total_price), self.currency
        if self.elapsed_time is not None:
            out["elapsed_time"] = self.elapsed_time
        return out


@dataclass
class UsageMeter:
    """Spend of one run or message so far, from its events and its record.

    :meth:`see` takes every stream event; the totals are kept running as nodes arrive, so an
    event costs the same however long the run (an event without spend is a string comparison).
    :meth:`see_run_total` takes the ``total_tokens`` of a polled run record.
    """

    nodes: list[NodeUsage] = field(default_factory=list)
    #: The ``message_end`` usage of a chat-family message (``ChatUsage``), if one arrived.
    message: Any = None
    run_tokens: int | None = None
    #: Events were read (some spend may be in them), and the stream was read to its end.
    streamed: bool = False
    complete: bool = False
    _node_tokens: int = 0
    _node_prices: dict[str, Decimal] = field(default_factory=dict)  # per currency ("" when unnamed)
    _prompt: int = 0
    _completion: int = 0
    _split_everywhere: bool = True

    @property
    def source(self) -> str:
        """``stream`` (read to its end), ``stream, then run record`` (it broke; the wait went on
        by polling) or ``run record`` (polls only: total_tokens and nothing else)."""
        if not self.streamed:
            return "run record"
        return "stream" if self.complete else "stream, then run record"

    def see(self, event: StreamEvent) -> bool:
        """Take one event; True when the spend grew (the moment to check a budget)."""
        self.streamed = True
        kind = event.event
        if kind not in _SPENDING_EVENTS:
            return False
        before = self.total_tokens, self.total_price
        if kind == "node_finished":
            node = NodeUsage.from_event(event)
            if node is None:
                return False
            self._add(node)
        elif kind == "message_end":
            self.message, self.complete = getattr(event, "usage", None), True
        else:  # workflow_finished
            self.complete = True
            tokens = _tokens(event.data.get("total_tokens"))
            if tokens is not None:
                self.run_tokens = max(self.run_tokens or 0, tokens)
        return (self.total_tokens, self.total_price) != before

    def _add(self, node: NodeUsage) -> None:
        self.nodes.append(node)
        self._node_tokens += node.total_tokens
        if node.total_price is not None:
            currency = node.currency or ""
            self._node_prices[currency] = self._node_prices.get(currency, Decimal(0)) + node.total_price
        if node.prompt_tokens is None or node.completion_tokens is None:
            self._split_everywhere = False
        else:
            self._prompt += node.prompt_tokens
            self._completion += node.completion_tokens

    def see_run_total(self, tokens: Any) -> bool:
        tokens = _tokens(tokens)
        if tokens is None or tokens <= (self.run_tokens or 0):
            return False
        self.run_tokens = tokens
        return True

    @property
    def total_tokens(self) -> int:
        message = self.message.total_tokens if self.message is not None else 0
        return max(self.run_tokens or 0, message, self._node_tokens)

    def _message_price(self) -> Decimal | None:
        return _price(self.message.total_price) if self.message is not None else None

    @property
    def currencies(self) -> list[str]:
        found = {currency for currency in self._node_prices if currency}
        if self.message is not None and self.message.currency and self._message_price():
            found.add(self.message.currency)
        return sorted(found)

    @property
    def currency(self) -> str | None:
        currencies = self.currencies
        return currencies[0] if len(currencies) == 1 else None

    @property
    def total_price(self) -> Decimal | None:
        """None when no source gave a price, or when prices came in two currencies."""
        message = self._message_price()
        if not self._node_prices and message is None:
            return None
        if len(self.currencies) > 1:
            return None
        return max(sum(self._node_prices.values(), Decimal(0)), message or Decimal(0))

    def split(self) -> tuple[int, int] | None:
        """(prompt, completion) tokens, when a source split every token it counted."""
        if self.message is not None and self.message.total_tokens:
            return self.message.prompt_tokens, self.message.completion_tokens
        if self.nodes and self._split_everywhere and self._prompt + self._completion == self.total_tokens:
            return self._prompt, self._completion
        return None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe (XCom): keys no source gave are left out."""
        out: dict[str, Any] = {"total_tokens": self.total_tokens}
        split = self.split()
        if split is not None:
            out["prompt_tokens"], out["completion_tokens"] = split
        price = self.total_price
        if price is not None:
            out["total_price"], out["currency"] = decimal_text(price), self.currency
        elif len(self.currencies) > 1:
            out["currencies"] = self.currencies
        out["nodes"] = [n.as_dict() for n in self.nodes]
        out["source"] = self.source
        return out


def describe(usage: dict[str, Any]) -> str:
    """``used 1,234 tokens (1,000 prompt + 234 completion), 0.0123 USD, in 3 nodes``."""
    text = f"used {usage.get('total_tokens', 0):,} tokens"
    if "prompt_tokens" in usage:
        text += f" ({usage['prompt_tokens']:,} prompt + {usage['completion_tokens']:,} completion)"
    if "total_price" in usage:
        text += f", {usage['total_price']} {usage.get('currency') or ''}".rstrip()
    nodes = usage.get("nodes") or []
    if nodes:
        text += f", in {len(nodes)} node{'s' if len(nodes) != 1 else ''}"
    return text


# --- budgets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spend:
    tokens: int = 0
    price: Decimal = Decimal(0)
    currency: str | None = None

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.tokens + other.tokens, self.price + other.price, self.currency or other.currency)

    def as_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "price": decimal_text(self.price), "currency": self.currency}

    @classmethod
    def from_dict(cls, value: Any) -> Spend:
        if not isinstance(value, dict):
            return cls()
        return cls(_tokens(value.get("tokens")) or 0, _price(value.get("price")) or Decimal(0),
                   value.get("currency") if isinstance(value.get("currency"), str) else None)


@dataclass(frozen=True)
class Budget:
    """``max_total_tokens`` and ``max_total_price`` of a task, over all its tries."""

    max_total_tokens: int | None = None
    max_total_price: Decimal | None = None
    currency: str | None = None

    @classmethod
    def of(cls, max_total_tokens: Any = None, max_total_price: Any = None) -> Budget:
        """Checked when the DAG is parsed: raises :class:`~dify_provider.client.errors.DifyConfigError`."""
        if max_total_tokens is not None and (
                isinstance(max_total_tokens, bool) or not isinstance(max_total_tokens, int) or max_total_tokens <= 0):
            raise e.DifyConfigError("max_total_tokens", f"must be a positive whole number of tokens, not "
                                    f"{max_total_tokens!r}")
        if max_total_price is None:
            return cls(max_total_tokens)
        match = _PRICE.match(max_total_price) if isinstance(max_total_price, str) else None
        if match is None:
            raise e.DifyConfigError("max_total_price", f"must be a string of an amount and the currency the app's "
                                    f"model prices are in, e.g. '0.50 USD', not {max_total_price!r} (a float would "
                                    "lose cents; a bare number has no currency to compare with)")
        amount = Decimal(match["amount"])
        if amount <= 0:
            raise e.DifyConfigError("max_total_price", f"must be more than zero, not {max_total_price!r}")
        return cls(max_total_tokens, amount, match["currency"].upper())

    @property
    def active(self) -> bool:
        return self.max_total_tokens is not None or self.max_total_price is not None

    def describe(self) -> str:
        parts = []
        if self.max_total_tokens is not None:
            parts.append(f"{self.max_total_tokens:,} tokens")
        if self.max_total_price is not None:
            parts.append(f"{decimal_text(self.max_total_price)} {self.currency}")
        return " and ".join(parts)

    def breach(self, spent: Spend) -> str | None:
        """Why ``spent`` is over this budget (or cannot be compared with it); None if within it."""
        if self.max_total_tokens is not None and spent.tokens > self.max_total_tokens:
            return f"{spent.tokens:,} tokens spent, over the budget of {self.max_total_tokens:,} (max_total_tokens)"
        if self.max_total_price is None or not spent.price:
            return None
        if spent.currency and spent.currency.upper() != self.currency:
            return (f"the app's prices are in {spent.currency}, the budget (max_total_price) in {self.currency}: "
                    "they cannot be compared, so the run was not let go on")
        if spent.price > self.max_total_price:
            return (f"{decimal_text(spent.price)} {self.currency} spent, over the budget of "
                    f"{decimal_text(self.max_total_price)} {self.currency} (max_total_price)")
        return None

    def exhausted(self, spent: Spend) -> bool:
        """Nothing left: a new try must not start anything."""
        return bool(self.breach(spent)) or (
            self.max_total_tokens is not None and spent.tokens >= self.max_total_tokens) or (
            self.max_total_price is not None and spent.price >= self.max_total_price)


def spend_of(meter: UsageMeter) -> Spend:
    return Spend(meter.total_tokens, meter.total_price or Decimal(0), meter.currency)
