"""Every alarm kind the system raises is in the table (`cloud.chains.alarm_kinds`) and has its
words in both languages, found by reading the source, so a new kind without words fails here.

Where a kind is raised, read with `ast` (not run):

    cloud   raise_alarm(session, node, KIND, …)    severity_of(KIND)    Alarm(kind=KIND, …)
    edge    Event(kind=KIND, category=Category.ALARM, …)    runtime_event(…, KIND, …, alarm=S)
            with S not None, and every member of `edge.rules.decisions.AlarmKind`

KIND is resolved: a literal, a module's or a class's constant (imported or not), an enum member
(`.value` of one), either branch of `a if c else b`, a local assigned from those (a tuple's
element: with the severity beside it when that says whether it is an alarm at all), or a
parameter of the enclosing function, whose callers are then read the same way. Anything else
fails the test with its file and line: the scanner must learn it, never skip it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud.chains import alarm_kinds
from cloud.web import catalogue, i18n
from edge.rules.decisions import AlarmKind

ROOT = Path(__file__).resolve().parents[2]

# The calls that raise an alarm: name → (package, position of the kind, its keyword).
CLOUD_SINKS = {"raise_alarm": (2, "kind"), "severity_of": (0, "kind"), "Alarm": (None, "kind")}
# Functions that hand an alarm on with its kind typed, not named: `alarm_event` stores a rule's
# `Alarm` (an `AlarmKind`: every member is counted), `runtime_event` is read at its callers.
TYPED = {("edge.runtime.events", "alarm_event"), ("edge.runtime.events", "runtime_event")}


class Unresolved(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"


def _modules(top: str) -> dict[str, Module]:
    found = {}
    for path in sorted((ROOT / top).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    return found


MODULES = {**_modules("cloud"), **_modules("edge")}


def _constants(body: list[ast.stmt]) -> dict[str, ast.expr]:
    """`NAME = value` (and `NAME: T = value`) at the top of a module or class body."""
    out: dict[str, ast.expr] = {}
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value and isinstance(stmt.target, ast.Name):
            out[stmt.target.id] = stmt.value
    return out


def _imported(module: Module, name: str) -> tuple[str, str] | None:
    """(module, name) a module's `from x import name` (or `import x as name`) refers to."""
    for stmt in module.tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module:
            for alias in stmt.names:
                if (alias.asname or alias.name) == name:
                    full = f"{stmt.module}.{alias.name}"
                    return (full, "") if full in MODULES else (stmt.module, alias.name)
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if (alias.asname or alias.name) == name:
                    return alias.name, ""
    return None


def _global(module: Module, name: str, site: ast.AST, where: Module) -> str:
    """A module-level name's string value (its own constant, or one it imports)."""
    constants = _constants(module.tree.body)
    if name in constants:
        return _literal(module, constants[name], site, where)
    found = _imported(module, name)
    if found and found[0] in MODULES and found[1]:
        return _global(MODULES[found[0]], found[1], site, where)
    raise Unresolved(f"{where.where(site)}: cannot resolve {name!r}")


def _class(module: Module, name: str) -> tuple[Module, ast.ClassDef] | None:
    for stmt in module.tree.body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == name:
            return module, stmt
    found = _imported(module, name)
    if found and found[0] in MODULES and found[1]:
        return _class(MODULES[found[0]], found[1])
    return None


def _literal(module: Module, expr: ast.expr, site: ast.AST, where: Module) -> str:
    """A constant expression's string: a literal, a name, `Class.MEMBER`, `module.NAME`."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ast.Attribute) and expr.attr == "value":
        return _literal(module, expr.value, site, where)  # an enum member's value
    if isinstance(expr, ast.Name):
        return _global(module, expr.id, site, where)
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        owner = expr.value.id
        found = _class(module, owner)
        if found is not None:
            return _literal(found[0], _constants(found[1].body)[expr.attr], site, where)
        imported = _imported(module, owner)
        if imported and imported[0] in MODULES and not imported[1]:
            return _global(MODULES[imported[0]], expr.attr, site, where)
    raise Unresolved(f"{where.where(site)}: cannot resolve {ast.unparse(expr)!r}")


def _functions(tree: ast.AST) -> Iterator[tuple[str, ast.FunctionDef]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            yield node.name, node


def _enclosing(module: Module, node: ast.AST) -> ast.FunctionDef | None:
    best = None
    for _, fn in _functions(module.tree):
        if fn.lineno <= getattr(node, "lineno", 0) <= (fn.end_lineno or fn.lineno) and (
            best is None or fn.lineno > best.lineno
        ):
            best = fn
    return best


def _called(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return call.func.id if isinstance(call.func, ast.Name) else None


def _argument(call: ast.Call, position: int | None, keyword: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    if position is not None and len(call.args) > position:
        return call.args[position]
    return None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _is_none(expr: ast.expr) -> bool:
    return isinstance(expr, ast.Constant) and expr.value is None


@dataclass(frozen=True, slots=True)
class Sink:
    module: str | None  # None: a call of this name anywhere in its tree
    name: str
    position: int | None
    keyword: str


class Scan:
    """The kinds raised in one tree (`cloud` or `edge`), each with where it was found."""

    def __init__(self, top: str, sinks: list[Sink]) -> None:
        self.top = top
        self.kinds: dict[str, str] = {}
        self.sinks = list(sinks)
        self.done: set[Sink] = set()

    def run(self) -> dict[str, str]:
        while self.sinks:
            sink = self.sinks.pop()
            if sink not in self.done:
                self.done.add(sink)
                self._calls_of(sink)
        return self.kinds

    def _modules(self, sink: Sink) -> Iterator[Module]:
        for name, module in MODULES.items():
            if name.split(".")[0] == self.top and sink.module in (None, name):
                yield module

    def _calls_of(self, sink: Sink) -> None:
        for module in self._modules(sink):
            for call in ast.walk(module.tree):
                if isinstance(call, ast.Call) and _called(call) == sink.name:
                    if self.top == "edge" and not self._edge_alarm(sink, call):
                        continue
                    kind = _argument(call, sink.position, sink.keyword)
                    if kind is None:
                        raise Unresolved(f"{module.where(call)}: {sink.name} without a kind")
                    self._resolve(module, call, kind)

    @staticmethod
    def _edge_alarm(sink: Sink, call: ast.Call) -> bool:
        if sink.name == "Event":
            category = _keyword(call, "category")
            return category is not None and "Category.ALARM" in ast.unparse(category)
        if sink.name == "runtime_event":
            alarm = _keyword(call, "alarm")
            return alarm is not None and not _is_none(alarm)
        return True  # a function found to hand its parameter on as an alarm's kind

    def _resolve(self, module: Module, call: ast.Call, kind: ast.expr) -> None:
        fn = _enclosing(module, call)
        if fn is not None and (module.name, fn.name) in TYPED:
            return
        if isinstance(kind, ast.Attribute) and kind.attr == "value":
            kind = kind.value
        if fn is not None and isinstance(kind, ast.Name):
            params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
            if kind.id in params:
                method = bool(params) and params[0] in ("self", "cls")
                index = params.index(kind.id) - (1 if method else 0)
                private = fn.name.startswith("_")
                self.sinks.append(Sink(module.name if private else None, fn.name, index, kind.id))
                return
            local = list(self._locals(module, fn, kind.id, call))
            if local:
                for expr in local:
                    self._add(module, expr, call)
                return
        self._add(module, kind, call)

    def _add(self, module: Module, expr: ast.expr, site: ast.AST) -> None:
        if isinstance(expr, ast.IfExp):  # either branch
            self._add(module, expr.body, site)
            self._add(module, expr.orelse, site)
            return
        self.kinds.setdefault(_literal(module, expr, site, module), module.where(site))

    @staticmethod
    def _locals(
        module: Module, fn: ast.FunctionDef, name: str, call: ast.Call
    ) -> Iterator[ast.expr]:
        """What `name` is assigned inside `fn`; from a tuple, only the rows whose severity
        (the call's `alarm=` name, assigned beside it) is not None."""
        alarm = _keyword(call, "alarm")
        severity = alarm.id if isinstance(alarm, ast.Name) else None
        for stmt in ast.walk(fn):
            if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
                continue
            target, value = stmt.targets[0], stmt.value
            if isinstance(target, ast.Name) and target.id == name:
                yield value
            elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                names = [t.id if isinstance(t, ast.Name) else None for t in target.elts]
                if name not in names:
                    continue
                if severity in names and _is_none(value.elts[names.index(severity)]):
                    continue  # an event here, not an alarm
                yield value.elts[names.index(name)]


def cloud_kinds() -> dict[str, str]:
    return Scan("cloud", [Sink(None, n, p, k) for n, (p, k) in CLOUD_SINKS.items()]).run()


def edge_kinds() -> dict[str, str]:
    found = Scan("edge", [Sink(None, "Event", None, "kind"),
                          Sink(None, "runtime_event", 2, "kind")]).run()  # fmt: skip
    return found | {k.value: "edge/rules/decisions.py AlarmKind" for k in AlarmKind}


def test_every_kind_raised_anywhere_is_in_the_table() -> None:
    table = {k.code: k.source for k in alarm_kinds.KINDS}
    raised = {**{k: ("cloud", w) for k, w in cloud_kinds().items()},
              **{k: ("edge", w) for k, w in edge_kinds().items()}}  # fmt: skip
    missing = {k: where for k, (_, where) in raised.items() if k not in table}
    assert missing == {}, "add these to cloud/chains/alarm_kinds.py and their words"
    wrong_source = {k: (s, table[k]) for k, (s, _) in raised.items() if table[k] != s}
    assert wrong_source == {}
    never = set(table) - set(raised)
    assert never == set(), "in the table, raised nowhere (gone? renamed?)"


def test_the_scan_finds_what_is_known_to_be_raised() -> None:
    """The scanner itself: kinds raised through each path it follows are found."""
    cloud, edge = cloud_kinds(), edge_kinds()
    assert {"payment_mismatch", "refused_status", "retired_upload", "claim_refused",
            "restore_drill_failed", "inventory_mismatch", "node_silent",
            "quarantine_cleared"} <= set(cloud)  # fmt: skip
    assert {"sync_refused", "command_rejected", "update_handover_failed", "relay_failed",
            "clock_implausible", "cycle_overrun", "meter_window_failed"} <= set(edge)  # fmt: skip
    # events beside alarms in the same code are not alarms
    assert not {"relay_confirmed", "relay_still_failing", "clock_plausible_again",
                "bus_up_again", "meter_window_written", "read_round"} & set(edge)  # fmt: skip


def test_the_scan_fails_on_a_kind_it_cannot_resolve() -> None:
    tree = ast.parse("def f(session, x):\n    raise_alarm(session, None, x.upper(), now, '')\n")
    module = Module("cloud.nowhere", ROOT / "cloud" / "nowhere.py", tree)
    MODULES[module.name] = module
    try:
        with pytest.raises(Unresolved, match=r"nowhere\.py:2"):
            cloud_kinds()
    finally:
        del MODULES[module.name]


@pytest.mark.parametrize("kind", alarm_kinds.KINDS, ids=lambda k: k.code)
def test_every_kind_has_words_in_both_languages(kind: alarm_kinds.KindRow) -> None:
    zh, en = catalogue.MESSAGES[f"{i18n.ALARM_KIND}{kind.code}"]
    assert zh.strip() and en.strip() and zh != en
    assert not zh.isascii(), f"{kind.code}: the Chinese words are not Chinese"
    for lang, words in (("zh", zh), ("en", en)):
        assert i18n.alarm_kind(i18n.translator(lang), kind.code) == words  # not "other kind"


def test_a_kind_the_cloud_does_not_know_is_its_code_under_a_label() -> None:
    zh, en = i18n.translator("zh"), i18n.translator("en")
    assert i18n.alarm_kind(zh, "fusion_overheat") == "其他类型（fusion_overheat）"
    assert i18n.alarm_kind(en, "fusion_overheat") == "other kind (fusion_overheat)"
    assert i18n.alarm_kind(en, "") == "other kind ()"
    assert i18n.alarm_kind(zh, "payment_mismatch") == "支付通知不符"


def test_the_table_is_one_row_a_kind_in_known_groups() -> None:
    codes = [k.code for k in alarm_kinds.KINDS]
    assert len(codes) == len(set(codes))
    assert {k.group for k in alarm_kinds.KINDS} <= set(alarm_kinds.GROUPS)
    assert alarm_kinds.severity_of("quarantined") == "critical"
    assert alarm_kinds.severity_of("newer_kind") == "warning"
    assert alarm_kinds.group_of("newer_kind") == "system"
