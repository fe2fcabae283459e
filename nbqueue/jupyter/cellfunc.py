"""Turn a ``%%task`` cell into a function: the magic line's signature, the cell's body.

Pure string/AST work, no IPython: the magics call these and keep no logic of their own.
"""

from __future__ import annotations

import ast
import io
import linecache
import tokenize
from collections.abc import Callable
from typing import Any

__all__ = ["build_function", "split_signature"]


class SignatureError(ValueError):
    """The magic line holds no valid ``name(params)`` signature."""


def split_signature(line: str) -> tuple[str, str]:
    """Split ``add(x, y=" ") --queue q`` into the signature and the remaining options.

    The signature is the first ``name(...)`` on the line (strings and nested brackets
    respected); everything before and after it is returned as the option string.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise SignatureError(f"cannot read the signature in {line!r}: {exc}") from None
    for i, tok in enumerate(tokens[:-1]):
        after = tokens[i + 1]
        if tok.type != tokenize.NAME or after.string != "(" or _is_option(line, tok.start[1]):
            continue
        depth = 0
        for end in tokens[i + 1 :]:
            depth += {"(": 1, ")": -1}.get(end.string, 0) if end.type == tokenize.OP else 0
            if depth == 0:
                start, stop = tok.start[1], end.end[1]
                return line[start:stop], (line[:start] + " " + line[stop:]).strip()
        raise SignatureError(f"unbalanced parentheses in {line!r}")
    return "", line.strip()


def _is_option(line: str, column: int) -> bool:
    """Whether the name at `column` is part of an ``--option`` word."""
    return column > 0 and line[column - 1] in "-="


def _parse_signature(signature: str) -> ast.FunctionDef:
    try:
        tree = ast.parse(f"def {signature}: pass")
    except SyntaxError as exc:
        raise SignatureError(f"not a function signature: {signature!r} ({exc.msg})") from None
    func = tree.body[0]
    if not isinstance(func, ast.FunctionDef):  # pragma: no cover - `def` always parses so
        raise SignatureError(f"not a function signature: {signature!r}")
    return func


def _return_last_expression(body: list[ast.stmt]) -> list[ast.stmt]:
    """Like a cell: the value of a final bare expression is what the function returns."""
    if body and isinstance(body[-1], ast.Expr):
        last = body[-1]
        body[-1] = ast.copy_location(ast.Return(value=last.value), last)
    return body


def build_function(
    signature: str,
    body: str,
    namespace: dict[str, Any],
    *,
    filename: str,
    return_last: bool = False,
    bind: bool = False,
) -> Callable[..., Any]:
    """Compile ``def <signature>: <body>`` with `namespace` as its globals.

    `signature` is how the task is called; with `bind` the function also gets the task
    as a first parameter ``self``. The body keeps its own line numbers and is registered
    with `linecache` under `filename`, so tracebacks show the cell's lines.
    """
    func = _parse_signature(signature)
    if bind:
        func.args.posonlyargs.insert(0, ast.arg(arg="self"))
    try:
        statements = ast.parse(body or "pass", filename=filename).body
    except SyntaxError as exc:
        raise SignatureError(f"the cell body is not valid Python: {exc}") from exc
    func.body = (_return_last_expression(statements) if return_last else statements) or [ast.Pass()]
    module = ast.Module(body=[func], type_ignores=[])
    ast.fix_missing_locations(module)
    linecache.cache[filename] = (len(body), None, body.splitlines(True), filename)
    local: dict[str, Any] = {}
    exec(compile(module, filename, "exec"), namespace, local)
    fn = local[func.name]
    fn.__module__ = namespace.get("__name__") or "__main__"
    return fn
