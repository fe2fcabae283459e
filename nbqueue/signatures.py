"""`Signature`: one task call as data, in Celery's signature format.

A dict with ``task, args, kwargs, options, subtask_type, immutable`` — it serializes as-is
and any Celery client or worker reads it. The composite kinds (chain, group, chord, map,
chunks) live in `nbqueue.canvas`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .protocol import new_id
from .result import AsyncResult, ResultBase

__all__ = ["Signature", "maybe_signature", "signature"]


class Signature(dict):
    """A task call, frozen as data: name, arguments and options.

    ``add.s(2, 3)`` makes one; ``sig.delay()`` / ``sig.apply_async()`` sends it; ``a | b``
    chains two. A signature is a dict, so it serializes as-is.

    Composite signatures (``nbqueue.canvas``) register under their ``subtask_type``
    (``class chain(Signature, kind="chain")``), as Celery's ``register_type`` does, so
    `signature` rebuilds any of them from its dict form.
    """

    #: subtask_type -> class; filled as the composite classes are defined
    _kinds: ClassVar[dict[str, type[Signature]]] = {}

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            Signature._kinds[kind] = cls

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Any = None) -> Signature:
        """Rebuild from the dict form (a plain task call; composites override this)."""
        sig = Signature(dict(data), app=app)
        sig["options"] = dict(data.get("options") or {})
        return sig

    def __init__(
        self,
        task: str | dict[str, Any] | None = None,
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        *,
        app: Any = None,
        **extra_options: Any,
    ) -> None:
        if isinstance(task, dict):  # from its serialized form
            super().__init__(task)
            self.setdefault("args", [])
            self.setdefault("kwargs", {})
            self.setdefault("options", {})
            self.setdefault("subtask_type", None)
            self.setdefault("immutable", False)
        else:
            opts = dict(options or {}, **extra_options)
            immutable = bool(opts.pop("immutable", immutable))
            super().__init__(
                task=task,
                args=list(args or ()),
                kwargs=dict(kwargs or {}),
                options=opts,
                subtask_type=subtask_type,
                immutable=immutable,
            )
        self.app = app

    # fields ---------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self["task"]

    name = task

    @property
    def args(self) -> list[Any]:
        return self["args"]

    @property
    def kwargs(self) -> dict[str, Any]:
        return self["kwargs"]

    @property
    def options(self) -> dict[str, Any]:
        return self["options"]

    @property
    def immutable(self) -> bool:
        return bool(self["immutable"])

    @property
    def subtask_type(self) -> str | None:
        return self["subtask_type"]

    @property
    def id(self) -> str | None:
        return self.options.get("task_id")

    @property
    def type(self) -> Any:
        """The registered task this signature calls."""
        return self._app().tasks[self.task]

    def _app(self) -> Any:
        if self.app is None:
            raise RuntimeError(f"signature {self!r} is not bound to an app; use app.signature()")
        return self.app

    # building -------------------------------------------------------------------------
    def clone(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any):
        """A copy with `args` prepended (unless immutable) and `kwargs`/`options` merged."""
        sig = signature(
            dict(self, options=dict(self.options), kwargs=dict(self.kwargs)), app=self.app
        )
        if not self.immutable:
            if args:
                sig["args"] = [*args, *self.args]
            if kwargs:
                sig["kwargs"] = {**self.kwargs, **kwargs}
        sig["options"].update(options)
        return sig

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Set options in place (e.g. ``queue=``, ``countdown=``); returns self."""
        if immutable is not None:
            self["immutable"] = immutable
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self["immutable"] = immutable

    def link(self, callback: Signature) -> Signature:
        """Run `callback` with this task's result when it succeeds."""
        self.options.setdefault("link", []).append(callback)
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Run `errback` with this task's id when it fails."""
        self.options.setdefault("link_error", []).append(errback)
        return errback

    on_error = link_error

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Any = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> ResultBase:
        """Fix the task id (and the group, chord, root and parent) now, as Celery does;
        return the result the call will have."""
        opts = self.options
        opts.setdefault("task_id", _id or new_id())
        if root_id:
            opts["root_id"] = root_id
        if parent_id:
            opts["parent_id"] = parent_id
        if group_id and "group_id" not in opts:
            opts["group_id"] = group_id
        if chord:
            opts["chord"] = chord
        if group_index is not None:
            opts["group_index"] = group_index
        return AsyncResult(self.id, app=self._app(), task_name=self.task)

    # sending --------------------------------------------------------------------------
    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> ResultBase:
        """Send the call; `args` are prepended unless the signature is immutable."""
        app = self._app()
        merged = {**self.options, **options}
        call_args, call_kwargs = self._arguments(args, kwargs)
        task = app.tasks.get(self.task)
        if task is not None:
            return task.apply_async(call_args, call_kwargs, **merged)
        return app.send_task(self.task, call_args, call_kwargs, **merged)

    def _arguments(self, args: Any, kwargs: dict[str, Any] | None) -> tuple[list[Any], dict]:
        if self.immutable:
            return list(self.args), dict(self.kwargs)
        return [*(args or ()), *self.args], {**self.kwargs, **(kwargs or {})}

    def delay(self, *args: Any, **kwargs: Any) -> ResultBase:
        return self.apply_async(args, kwargs)

    def apply(self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any):
        """Run here and now, through the worker's execution path."""
        call_args, call_kwargs = self._arguments(args, kwargs)
        return self.type.apply(call_args, call_kwargs, **{**self.options, **options})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task's function directly in this thread."""
        call_args, call_kwargs = self._arguments(args, kwargs)
        return self.type(*call_args, **call_kwargs)

    # composition ----------------------------------------------------------------------
    def __or__(self, other: Any) -> Signature:
        if isinstance(other, Signature):
            return self._kinds["chain"](self, other, app=self.app or other.app)
        return NotImplemented

    def __deepcopy__(self, memo: Any) -> Signature:
        import copy

        return signature(copy.deepcopy(dict(self), memo), app=self.app)

    def __reduce__(self) -> tuple[Any, ...]:
        return signature, (dict(self),)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        prefix = "%" if self.immutable else ""
        return f"{prefix}{self.task}({', '.join(parts)})"


def signature(value: Any, *args: Any, app: Any = None, **kwargs: Any) -> Signature:
    """A `Signature` from a task name or from its dict form (any subtask type)."""
    if isinstance(value, dict) and not isinstance(value, Signature):
        return _from_dict(value, app)
    if isinstance(value, Signature):
        if app is not None and value.app is None:
            value.app = app
        return value
    return Signature(value, *args, app=app, **kwargs)


def _from_dict(data: dict[str, Any], app: Any) -> Signature:
    cls = Signature._kinds.get(data.get("subtask_type") or "", Signature)
    sig = cls.from_dict(data, app)
    sig["immutable"] = bool(data.get("immutable", sig.immutable))
    return sig


def maybe_signature(value: Any, app: Any = None) -> Signature | None:
    """`value` as a Signature bound to `app` (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, Signature):
        if app is not None and value.app is None:
            value.app = app
        return value
    if isinstance(value, dict):
        return _from_dict(value, app)
    raise TypeError(f"{value!r} is not a signature")
