"""Label and field selectors with the grammar and meaning of Kubernetes' ``labels.Parse``.

``a!=b`` and ``a notin (x)`` match objects without the label, as they do upstream; a
selector the server cannot parse is a 400, never a silent match-all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from crossdock.kubernetes.local_runtime.errors import bad_request

_TOKEN = re.compile(r"\s*(==|!=|=|\(|\)|,|!|[^\s=!(),]+)")
_SET_OPS = {"in", "notin"}

#: Field paths the real API server lets clients select pods on.
POD_FIELDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
    "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", "") or "",
    "spec.restartPolicy": lambda o: o.get("spec", {}).get("restartPolicy", ""),
    "spec.schedulerName": lambda o: o.get("spec", {}).get("schedulerName", ""),
    "spec.serviceAccountName": lambda o: o.get("spec", {}).get("serviceAccountName", "") or "",
    "status.phase": lambda o: o.get("status", {}).get("phase", "") or "",
    "status.podIP": lambda o: o.get("status", {}).get("podIP", "") or "",
    "status.nominatedNodeName": lambda o: o.get("status", {}).get("nominatedNodeName", "") or "",
}
GENERIC_FIELDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "metadata.name": POD_FIELDS["metadata.name"],
    "metadata.namespace": POD_FIELDS["metadata.namespace"],
}


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # "!=", "notin"


class LabelSelector:
    """A parsed ``labelSelector``; the empty selector matches everything."""

    def __init__(self, requirements: list[Requirement]) -> None:
        self.requirements = requirements

    @classmethod
    def parse(cls, text: str | None) -> "LabelSelector":
        if not text or not text.strip():
            return cls([])
        tokens = _tokenize(text)
        requirements: list[Requirement] = []
        pos = 0
        while pos < len(tokens):
            requirement, pos = _parse_requirement(tokens, pos)
            requirements.append(requirement)
            if pos < len(tokens):
                if tokens[pos] != ",":
                    raise bad_request(f"unable to parse requirement: found '{tokens[pos]}', expected: ','")
                pos += 1
                if pos == len(tokens):
                    raise bad_request("unable to parse requirement: found '', expected: identifier")
        return cls(requirements)

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or not match.group(1):
            raise bad_request(f"unable to parse requirement: unexpected character at {pos}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def _is_identifier(token: str) -> bool:
    return token not in {"==", "!=", "=", "(", ")", ",", "!"}


def _parse_requirement(tokens: list[str], pos: int) -> tuple[Requirement, int]:
    if tokens[pos] == "!":
        if pos + 1 >= len(tokens) or not _is_identifier(tokens[pos + 1]):
            raise bad_request("unable to parse requirement: found '', expected: identifier after '!'")
        return Requirement(tokens[pos + 1], "!"), pos + 2
    key = tokens[pos]
    if not _is_identifier(key):
        raise bad_request(f"unable to parse requirement: found '{key}', expected: !, identifier, or 'end of string'")
    pos += 1
    if pos >= len(tokens) or tokens[pos] == ",":
        return Requirement(key, "exists"), pos
    op = tokens[pos]
    if op in ("=", "==", "!="):
        if pos + 1 >= len(tokens) or not _is_identifier(tokens[pos + 1]):
            # ``a=`` selects an empty value, as upstream allows.
            return Requirement(key, "!=" if op == "!=" else "=", ("",)), pos + 1
        return Requirement(key, "!=" if op == "!=" else "=", (tokens[pos + 1],)), pos + 2
    if op in _SET_OPS:
        pos += 1
        if pos >= len(tokens) or tokens[pos] != "(":
            raise bad_request(f"unable to parse requirement: found '{tokens[pos] if pos < len(tokens) else ''}', expected: '('")
        pos += 1
        values: list[str] = []
        while True:
            if pos >= len(tokens):
                raise bad_request("unable to parse requirement: found '', expected: ',' or ')'")
            token = tokens[pos]
            if token == ")":
                pos += 1
                break
            if token == ",":
                pos += 1
                continue
            values.append(token)
            pos += 1
        return Requirement(key, op, tuple(values)), pos
    raise bad_request(f"unable to parse requirement: found '{op}', expected: in, notin, =, ==, !=, gt, lt")


class FieldSelector:
    """A parsed ``fieldSelector`` (``f=v``, ``f==v``, ``f!=v`` joined by commas)."""

    def __init__(self, terms: list[tuple[Callable[[dict[str, Any]], str], bool, str]]) -> None:
        self.terms = terms

    @classmethod
    def parse(cls, text: str | None, *, fields: dict[str, Callable[[dict[str, Any]], str]]) -> "FieldSelector":
        terms = []
        for part in (text or "").split(","):
            part = part.strip()
            if not part:
                continue
            for op in ("!=", "==", "="):
                if op in part:
                    field, _, value = part.partition(op)
                    break
            else:
                raise bad_request(f"invalid selector: '{part}'; can't understand '{part}'")
            field = field.strip()
            if field not in fields:
                raise bad_request(f"field label not supported: {field}")
            terms.append((fields[field], op == "!=", value.strip()))
        return cls(terms)

    def matches(self, obj: dict[str, Any]) -> bool:
        return all((getter(obj) != value) if negate else (getter(obj) == value)
                   for getter, negate, value in self.terms)
