"""``crossdock variables get|set|list|delete|import|export``, as ``airflow variables``.

Reads go through the whole chain (``CROSSDOCK_VAR_<KEY>``, then the variables file);
writes go to ``[secrets] variables_file``. No database is opened.
"""

from __future__ import annotations

import json
from pathlib import Path

from crossdock.cli.errors import CliError
from crossdock.cli.output import print_rows


def get(args) -> int:
    from crossdock.secrets.variable import NOTSET, Variable

    default = NOTSET if args.default is None else args.default
    value = Variable.get(args.key, default_var=default, deserialize_json=args.json)
    if args.json and value is not default:
        print(json.dumps(value, indent=2, ensure_ascii=False))
    else:
        print(value)
    return 0


def _json_argument(text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from None


def set_variable(args) -> int:
    from crossdock.secrets.backends import file_backend
    from crossdock.secrets.variable import Variable

    if args.json:
        Variable.set(args.key, _json_argument(args.value, "the value"), serialize_json=True)
    else:
        Variable.set(args.key, args.value)
    print(f"Variable {args.key!r} set in {file_backend().describe_variable()}")
    return 0


def list_variables(args) -> int:
    from crossdock.secrets.backends import file_backend, listing
    from crossdock.secrets.environment import EnvironmentBackend
    from crossdock.secrets.masking import MASK, is_sensitive_name

    rows = [{"key": key, "source": source,
             "value": (value if args.output == "json" else one_line(value))
             if args.show_secrets or not is_sensitive_name(key) else MASK}
            for key, value, source in listing(EnvironmentBackend().variables(), file_backend().variables())]
    print_rows(rows, columns=["key", "value", "source"], output=args.output)
    return 0


def one_line(value: str) -> str:
    """A value as one table cell: JSON compacted, other line breaks shown as ``\\n``."""
    if "\n" not in value:
        return value
    try:
        return json.dumps(json.loads(value), ensure_ascii=False)
    except json.JSONDecodeError:
        return value.replace("\r", "\\r").replace("\n", "\\n")


def delete(args) -> int:
    from crossdock.secrets.backends import file_backend
    from crossdock.secrets.variable import Variable

    backend = file_backend()
    if not Variable.delete(args.key):
        raise CliError(f"Variable {args.key!r} does not exist in {backend.describe_variable()}")
    print(f"Variable {args.key!r} deleted from {backend.describe_variable()}")
    return 0


def import_variables(args) -> int:
    """Every key of the file is set in one write; values that are not strings are stored as JSON."""
    from crossdock.secrets.backends import file_backend
    from crossdock.secrets.secret_files import read_mapping
    from crossdock.secrets.variable import check_key, warn_if_shadowed

    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no file {path} to import Variables from")
    values = {check_key(key): value if isinstance(value, str) else json.dumps(value, indent=2)
              for key, value in read_mapping(path, what="file").items()}
    backend = file_backend()
    backend.set_variables(values)
    for key in values:
        warn_if_shadowed(key)
    print(f"{len(values)} Variable(s) imported into {backend.describe_variable()}")
    return 0


def export_variables(args) -> int:
    """The variables file's Variables (not the environment's) as stored, so importing gives them back."""
    from crossdock.secrets.backends import file_backend
    from crossdock.secrets.secret_files import write_mapping

    values = file_backend().variables()
    write_mapping(Path(args.file), values, what="export file")
    print(f"{len(values)} Variable(s) exported to {args.file}")
    return 0
