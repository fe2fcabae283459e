"""Workflows: `chain`, `group`, `chord`, `xmap`/`xstarmap`/`chunks`, built of `Signature`s.

Everything serializes in Celery's signature format and travels the way Celery 5.7 sends
it: a chain's remaining steps ride in ``embed.chain`` (reversed), group members carry
``group`` and ``group_index`` headers, chord header tasks carry the body in
``embed.chord``, and frozen options are Celery's (see ``canvas_shapes.json``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from .context import current_request
from .protocol import new_id
from .result import GroupResult, ResultBase
from .signatures import Signature, maybe_signature, signature

__all__ = [
    "Signature",
    "chain",
    "chord",
    "chunks",
    "group",
    "maybe_signature",
    "signature",
    "xmap",
    "xstarmap",
]

#: per-call options that belong to one task, never copied onto a group's members
_PER_TASK = ("task_id", "group_id", "group_index", "chord", "chain", "link", "link_error")


def _as_sig(task: Any, app: Any) -> Signature:
    sig = maybe_signature(task, app=app)
    if sig is None:
        raise TypeError(f"{task!r} is not a signature")
    return sig


def _attach_parent(result: ResultBase | None, parent: ResultBase | None) -> None:
    """Make `parent` the parent of the first result without one up `result`'s chain."""
    node = result
    while node is not None and parent is not None:
        if node.parent is None:
            node.parent = parent
            return
        node = node.parent


class chain(Signature, kind="chain"):
    """Tasks run one after another, each receiving the previous result.

    Sent as its first task, with the rest in ``embed.chain`` (reversed, Celery's way);
    a group followed by another step becomes a chord, as in Celery.
    """

    def __init__(self, *tasks: Any, app: Any = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], dict) and isinstance(tasks[0], Iterable):
            tasks = tuple(tasks[0])
        app = app or next((getattr(t, "app", None) for t in tasks if getattr(t, "app", None)), None)
        flat: list[Signature] = []
        for task in tasks:
            sig = _as_sig(task, app)
            flat.extend(sig.tasks if isinstance(sig, chain) else [sig])
        super().__init__(
            "celery.chain", (), {"tasks": flat}, options=options, subtask_type="chain", app=app
        )

    @property
    def tasks(self) -> list[Signature]:
        return self.kwargs["tasks"]

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Any = None) -> Signature:
        kwargs = data.get("kwargs") or {}
        return cls(*kwargs.get("tasks", ()), app=app, **dict(data.get("options") or {}))

    def __or__(self, other: Any) -> Signature:
        if isinstance(other, Signature):
            return chain(*self.tasks, other, app=self.app or other.app)
        return NotImplemented

    def _steps(self, args: Any, kwargs: Any) -> list[Signature]:
        """Clones of the steps: partial arguments on the first, group + step -> chord."""
        steps = [t.clone() for t in self.tasks]
        if not steps:
            raise ValueError("cannot send an empty chain")
        steps[0] = steps[0].clone(args, kwargs)
        merged: list[Signature] = []
        for step in steps:
            if merged and isinstance(merged[-1], group):
                merged[-1] = chord(merged[-1], step, app=self.app)
            else:
                merged.append(step)
        return merged

    def freeze(self, _id: str | None = None, **options: Any) -> ResultBase:
        steps = self.kwargs["tasks"] = self._steps((), None)
        return self._freeze_steps(steps, _id, **options)

    @staticmethod
    def _freeze_steps(
        steps: list[Signature],
        _id: str | None,
        *,
        root_id: str | None = None,
        parent_id: str | None = None,
        **last: Any,
    ) -> ResultBase:
        """Freeze every step (the last one with `_id` and the group/chord options)."""
        previous: ResultBase | None = None
        for i, step in enumerate(steps):
            if i == len(steps) - 1:
                frozen = step.freeze(_id, root_id=root_id, **last)
            else:
                frozen = step.freeze(root_id=root_id)
            _attach_parent(frozen, previous)
            previous = frozen
        assert previous is not None
        return previous

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> ResultBase:
        app = self._app()
        options = {**self.options, **options}
        steps = self._steps(args, kwargs)
        _link_steps(steps, options.pop("link", None), options.pop("link_error", None))
        task_id = options.pop("task_id", None)
        chain_rest = options.pop("chain", None) or []
        last = {k: options.pop(k) for k in ("group_id", "group_index", "chord") if k in options}
        result = self._freeze_steps(steps, task_id, root_id=options.get("root_id"), **last)
        first, rest = steps[0], steps[1:]
        remaining = [dict(s) for s in reversed(rest)] + list(chain_rest)
        first.app = first.app or app
        first.apply_async(chain=remaining or None, **options)
        return result

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks) if self.tasks else "<empty chain>"


class group(Signature, kind="group"):
    """Tasks run in parallel; the result is a `GroupResult` in the same order.

    Each member is sent with the ``group`` and ``group_index`` headers; nested groups are
    flattened into this one, as Celery does.
    """

    def __init__(self, *tasks: Any, app: Any = None, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], dict) and isinstance(tasks[0], Iterable):
            tasks = tuple(tasks[0])
        app = app or next((getattr(t, "app", None) for t in tasks if getattr(t, "app", None)), None)
        sigs = [_as_sig(t, app) for t in tasks]
        super().__init__(
            "celery.group", (), {"tasks": sigs}, options=options, subtask_type="group", app=app
        )

    @property
    def tasks(self) -> list[Signature]:
        return self.kwargs["tasks"]

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Any = None) -> Signature:
        kwargs = data.get("kwargs") or {}
        return cls(*kwargs.get("tasks", ()), app=app, **dict(data.get("options") or {}))

    def _flat(self) -> list[Signature]:
        """The members, nested groups flattened into their place."""
        out: list[Signature] = []
        for task in self.tasks:
            out.extend(task._flat() if isinstance(task, group) else [task])
        return out

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> GroupResult:
        opts = self.options
        gid = opts.setdefault("task_id", _id or new_id())
        if group_id:
            opts["group_id"] = group_id
        if chord:
            opts["chord"] = chord
        if group_index is not None:
            opts["group_index"] = group_index
        root_id = opts.setdefault("root_id", root_id)
        parent_id = opts.setdefault("parent_id", parent_id)
        members = self.kwargs["tasks"] = self._flat()
        results = [
            task.freeze(
                group_id=group_id,
                chord=chord,
                root_id=root_id,
                parent_id=parent_id,
                group_index=index,
            )
            for index, task in enumerate(members)
        ]
        return GroupResult(gid, results, app=self._app())

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        app = self._app()
        options.pop("chain", None)  # a trailing group in a chain has nothing after it
        options.pop("group_index", None)
        gid = options.pop("task_id", None) or self.options.get("task_id") or new_id()
        options.pop("group_id", None)
        chord_body = options.pop("chord", None)
        shared = {k: v for k, v in {**self.options, **options}.items() if k not in _PER_TASK}
        shared.pop("task_id", None)
        add_to_parent = shared.pop("add_to_parent", True)
        errbacks = _as_list({**self.options, **options}.get("link_error"))
        result = self.freeze(gid, root_id=options.get("root_id"))
        with app.producer_batch():
            for index, task in enumerate(self.tasks):
                task.app = task.app or app
                own = {k: v for k, v in shared.items() if k not in task.options}
                if errbacks:  # a group's errbacks are every member's (Celery's rule)
                    own["link_error"] = [*_as_list(task.options.get("link_error")), *errbacks]
                task.apply_async(
                    args,
                    kwargs,
                    group_id=result.id,
                    group_index=index,
                    chord=chord_body,
                    add_to_parent=False,
                    **own,
                )
        parent = current_request()
        if add_to_parent and parent is not None and parent.id is not None:
            parent.children.append(result)  # the group, not each member (Celery's trail)
        return result

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"


class chord(Signature, kind="chord"):
    """A header group whose results, in order, are passed to a body task.

    Each header task carries the body in ``embed.chord``; the backend counts the results
    (``set_chord_size``/``add_chord_part``) and the last one in sends the body.
    """

    def __init__(self, header: Any, body: Any = None, app: Any = None, **options: Any) -> None:
        if isinstance(header, dict) and not isinstance(header, group):
            header = [header]  # one signature: a header of one
        if isinstance(header, group):
            app = app or header.app
            header_form: Any = header
        else:
            header_form = [_as_sig(t, app) for t in header]
            app = app or next((t.app for t in header_form if t.app), None)
        app = app or getattr(body, "app", None)
        body_sig = _as_sig(body, app) if body is not None else None
        super().__init__(
            "celery.chord",
            (),
            {"kwargs": {}, "header": header_form, "body": body_sig},
            options=options,
            subtask_type="chord",
            app=app,
        )

    @property
    def header(self) -> group:
        """The header as a group (it is kept as given: a list or a group)."""
        header = self.kwargs["header"]
        return header if isinstance(header, group) else group(*header, app=self.app)

    @property
    def body(self) -> Signature:
        return self.kwargs["body"]

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Any = None) -> Signature:
        kwargs = data.get("kwargs") or {}
        header = kwargs.get("header")
        header_sig = signature(header, app=app) if isinstance(header, dict) else header or []
        return cls(header_sig, kwargs.get("body"), app=app, **dict(data.get("options") or {}))

    def __call__(self, body: Any = None, **options: Any) -> ResultBase:  # chord(header)(body)
        if body is not None:
            self.kwargs["body"] = _as_sig(body, self.app)
        return self.apply_async(**options)

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> ResultBase:
        header = self.kwargs["header"] = self.header
        header_result = header.freeze(parent_id=parent_id, root_id=root_id)
        self.options["task_id"] = header_result.id
        body_result = self.body.freeze(
            _id, root_id=root_id, chord=chord, group_id=group_id, group_index=group_index
        )
        _attach_parent(body_result, header_result)
        return body_result

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> ResultBase:
        app = self._app()
        if self.body is None:
            raise ValueError("a chord needs a body: chord(header)(body) or chord(header, body)")
        body_id = options.pop("task_id", None)  # chord(...).apply_async(task_id=): the body's
        options = {**self.options, **options}
        own_id = options.pop("task_id", None)  # set by freeze: the header group's id
        body = self.body.clone()
        if options.get("chain"):  # the rest of an outer chain runs after the body
            body.options["chain"] = options.pop("chain")
        for key in ("link", "link_error"):  # the chord's callbacks are the body's
            callbacks = options.pop(key, None)
            if callbacks:
                body.options[key] = [*_as_list(body.options.get(key)), *_as_list(callbacks)]
        header = self.header.clone()
        gid = header.options.get("task_id") or own_id or new_id()
        body_id = body.options["task_id"] = body_id or body.options.get("task_id") or new_id()
        # a chord inside a group or chord header: its body is what the outer one waits for
        outer = {k: options.pop(k, None) for k in ("group_id", "group_index", "chord")}
        body_result = body.freeze(
            body_id,
            group_id=outer["group_id"] or gid,
            chord=outer["chord"],
            group_index=outer["group_index"],
            root_id=options.get("root_id"),
        )
        header.options["task_id"] = gid
        members = header._flat()
        if not members:  # nothing to wait for: the body runs with an empty list
            body.apply_async(([],))
            body_result.parent = GroupResult(gid, [], app=app)
            return body_result
        app.backend.set_chord_size(gid, len(members))
        body_result.parent = header.apply_async(
            args, kwargs, task_id=gid, chord=dict(body), **_header_options(options)
        )
        return body_result

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


def _link_steps(steps: list[Signature], callbacks: Any, errbacks: Any) -> None:
    """A chain's own links, Celery's way: callbacks after its last step, errbacks on every
    step (whichever fails calls them). The steps are clones; their lists are replaced."""
    for key, targets, linked in (("link", steps[-1:], callbacks), ("link_error", steps, errbacks)):
        for step in targets if linked else ():
            step.options[key] = [*_as_list(step.options.get(key)), *_as_list(linked)]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _header_options(options: dict[str, Any]) -> dict[str, Any]:
    """What a chord passes on to its header tasks (not the body's own options)."""
    return {
        k: v
        for k, v in options.items()
        if k not in ("task_id", "group_id", "group_index", "chord", "chain", "link", "link_error")
    }


class _mapper(Signature):
    _task_name = ""
    _kind = ""

    def __init__(self, task: Any, it: Iterable[Any], app: Any = None, **options: Any) -> None:
        sig = _as_sig(task, app)
        super().__init__(
            self._task_name,
            (),
            {"task": sig, "it": [list(x) if isinstance(x, tuple) else x for x in it]},
            options=options,
            subtask_type=self._kind,
            immutable=True,
            app=app or sig.app,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Any = None) -> Signature:
        kwargs = data.get("kwargs") or {}
        options = dict(data.get("options") or {})
        return cls(kwargs["task"], kwargs.get("it", ()), app=app, **options)


class xmap(_mapper, kind="xmap"):
    """One message that calls `task` on every item of `it` (``task.map(it)``)."""

    _task_name = "celery.map"
    _kind = "xmap"


class xstarmap(_mapper, kind="xstarmap"):
    """One message that calls ``task(*args)`` for every tuple in `it`."""

    _task_name = "celery.starmap"
    _kind = "xstarmap"


class chunks(Signature, kind="chunks"):
    """`it` split into chunks of `n`, each chunk one ``starmap`` message."""

    def __init__(self, task: Any, it: Iterable[Any], n: int, app: Any = None, **options: Any):
        sig = _as_sig(task, app)
        super().__init__(
            "celery.chunks",
            (),
            {"task": sig, "it": [list(x) for x in it], "n": int(n)},
            options=options,
            subtask_type="chunks",
            immutable=True,
            app=app or sig.app,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Any = None) -> Signature:
        kwargs = data.get("kwargs") or {}
        options = dict(data.get("options") or {})
        return cls(kwargs["task"], kwargs.get("it", ()), kwargs.get("n", 1), app=app, **options)

    def group(self) -> group:
        task, items, n = self.kwargs["task"], self.kwargs["it"], self.kwargs["n"]
        it = iter(items)
        parts = iter(lambda: list(itertools.islice(it, n)), [])
        return group(*[xstarmap(task, part, app=self.app) for part in parts], app=self.app)

    def apply_async(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options):
        return self.group().apply_async(**options)
