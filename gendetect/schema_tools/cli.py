"""`gendetect schema infer` and `gendetect schema check`."""

from __future__ import annotations

import argparse
from pathlib import Path

from gendetect.errors import CliError, InputError

SCHEMA_SUFFIXES = (".yaml", ".yml")


def infer_main(args: argparse.Namespace) -> int:
    from gendetect.data.io import read_table
    from gendetect.schema_tools.infer import infer_schema, schema_name
    from gendetect.schema_tools.render import render

    out = Path(args.out)
    if out.suffix.lower() not in SCHEMA_SUFFIXES:
        raise CliError(f"--out must end with .yaml or .yml: {args.out}")
    if out.exists() and not args.force:
        # The draft is meant to be edited: never lose the edits silently.
        raise CliError(f"{args.out} exists (an edited schema?): pass --force to replace it")
    if out.resolve() == Path(args.data).resolve():
        raise CliError("--out would replace the data file")
    df = read_table(args.data)
    draft = infer_schema(df, name=args.name or schema_name(Path(args.data).stem),
                         source=str(args.data))
    text = render(draft)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", source=str(out)) from None
    kinds: dict[str, list[str]] = {}
    for f in draft.fields:
        kinds.setdefault(f.kind, []).append(f.name)
    print(f"wrote a draft schema for {len(draft.fields)} columns to {out}:")
    for kind, names in kinds.items():
        print(f"  {kind}: {', '.join(names)}")
    n_features = sum(1 if f == "since_previous" else len(g.get("windows", []))
                     for g in draft.aggregates for f in g["features"])
    print(f"  aggregates: {len(draft.aggregates)} group(s), {n_features} features")
    checks = sum(f.check for f in draft.fields) + len(draft.notes)
    print(f"read the comments ({checks} marked CHECK), edit, then: gendetect schema check "
          f"--schema {out} --data {args.data}")
    return 0


def check_main(args: argparse.Namespace) -> int:
    from gendetect.data.io import read_table
    from gendetect.schema import load_schema
    from gendetect.schema_tools.check import check_frame, format_report

    schema = load_schema(args.schema)
    df = read_table(args.data)
    reports = check_frame(schema, df, str(args.data))
    print(format_report(reports, source=str(args.data), schema_source=str(args.schema),
                        schema=schema, n_rows=len(df)))
    return 2 if any(r.status == "refused" for r in reports) else 0


def main(args: argparse.Namespace) -> int:
    return {"infer": infer_main, "check": check_main}[args.action](args)
