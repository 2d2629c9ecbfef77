"""``segrt models``: the model zoo with input size, classes and parameter count."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "models", help="list the model zoo",
        description="List the zoo models `segrt export` accepts by name: family (semantic masks or "
                    "instances), default input size (HxW; override with export --size), number of classes, "
                    "parameters in millions and the preferred exporter. Besides these names, export takes "
                    "package.module:factory or an .onnx file.")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from segrt.export.zoo import zoo_table

    rows = zoo_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = ("name", "family", "input", "classes", "params", "exporter", "description")
    lines = [(r["name"], r["family"], r["input_size"], str(r["classes"]),
              "-" if r["params_m"] is None else f"{r['params_m']:.2f}M", r["exporter"],
              r["description"] if not r["unavailable"] else f"NOT AVAILABLE: {r['unavailable']}")
             for r in rows]
    widths = [max(len(h), *(len(ln[i]) for ln in lines)) for i, h in enumerate(head[:-1])]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    print(fmt.format(*head))
    for ln in lines:
        print(fmt.format(*ln))
    print("\nalso: segrt export package.module:factory | file.py:factory | model.onnx --size HxW --classes names.txt")
    return 0
