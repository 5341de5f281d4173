"""MLflow's own words for a request whose body its message cannot parse.

MLflow's handlers read a request with ``_get_request_message(Message(), schema={...})``: when
the body does not parse into the message (an id given as a number, a list given as a
string), MLflow checks the fields against the handler's schema and answers 400 in its words
(``Invalid value 31 for parameter 'run_id' supplied``). The canonical reading refuses such a
body before any id is read (canonical.check_parses: MLflow would otherwise go on with a
partly parsed message), and clients and MLflow's own tests match on MLflow's words; so the
refusal says what MLflow would say, whenever the handler's schema says anything.

The schemas are written inline in each handler, so they are read from the installed MLflow's
own source (`ast`), each schema expression evaluated in the handlers module, once per
process: no copy to fall out of step with MLflow. A message whose handlers disagree on the
schema gets none (our own wording stays). Nothing here touches a store.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import logging
from typing import Any

_logger = logging.getLogger(__name__)
READER = "_get_request_message"


def _schema_calls(tree: ast.Module) -> list[tuple[ast.expr, ast.expr, list[ast.stmt]]]:
    """(message constructor, schema, the helpers the handler defines for it) of every
    `_get_request_message(M(), schema=...)` in a module-level function."""
    found = []
    for handler in tree.body:
        if not isinstance(handler, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        helpers = [node for node in handler.body if isinstance(node, ast.FunctionDef)]
        for node in ast.walk(handler):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else None
            message = node.args[0]
            schema = next((k.value for k in node.keywords if k.arg == "schema"), None)
            if name == READER and isinstance(message, ast.Call) and schema is not None:
                found.append((message.func, schema, helpers))
    return found


def _evaluate(expr: ast.expr, helpers: list[ast.stmt], namespace: dict[str, Any]) -> Any:
    if helpers:  # validators the handler defines locally (log-batch's field checks)
        namespace = dict(namespace)
        exec(compile(ast.Module(helpers, []), "<mlflow>", "exec"), namespace)  # noqa: S102 - MLflow's own source, in its own module
    return eval(compile(ast.Expression(expr), "<mlflow>", "eval"), namespace)  # noqa: S307


@functools.cache
def schemas() -> dict[type, dict[str, list[Any]]]:
    """Message class → the schema its handler validates a body with (read once)."""
    from mlflow.server import handlers

    namespace = vars(handlers)
    chosen: dict[type, Any] = {}
    try:
        tree = ast.parse(inspect.getsource(handlers))
    except (OSError, SyntaxError) as exc:  # no source installed: our own wording stays
        _logger.warning("MLflow's handler schemas cannot be read (%s)", exc)
        return {}
    for message_expr, schema_expr, helpers in _schema_calls(tree):
        try:
            message = _evaluate(message_expr, [], namespace)
            schema = _evaluate(schema_expr, helpers, namespace)
        except Exception as exc:  # a schema built from the request, not static: none
            _logger.debug("no static schema for %s: %r", ast.unparse(message_expr), exc)
            continue
        if not isinstance(message, type) or not isinstance(schema, dict):
            continue
        source = ast.dump(schema_expr)
        if chosen.get(message, (source, None))[0] != source:
            chosen[message] = ("", None)  # handlers disagree: no schema for this message
        else:
            chosen[message] = (source, schema)
    return {message: schema for message, (_, schema) in chosen.items() if schema is not None}


def schema_refusal(message: type | None, request_json: Any) -> dict[str, Any] | None:
    """MLflow's 400 for a request that parsed into `message` but that the handler's schema
    refuses anyway (a required field missing, a value out of range): the same check, with the
    same `proto_parsing_succeeded=True`, that `_get_request_message` makes before the handler
    touches a store."""
    if message is None:
        return None
    return _validated(message, request_json, parsed=True)


def refusal(message: type, request_json: Any) -> dict[str, Any] | None:
    """MLflow's 400 answer (its JSON: error_code, message, ...) for `request_json`, which does
    not parse into `message`; None when MLflow's schema for it finds nothing (or has none)."""
    return _validated(message, request_json, parsed=False)


def _validated(message: type, request_json: Any, parsed: bool) -> dict[str, Any] | None:
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _validate_request_json_with_schema

    schema = schemas().get(message)
    if schema is None or not isinstance(request_json, dict):
        return None
    try:
        _validate_request_json_with_schema(request_json, schema, parsed)
    except MlflowException as exc:
        return json.loads(exc.serialize_as_json())
    except Exception:
        return None
    return None
