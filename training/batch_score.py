"""Batch scoring: a file in, the same rows with decisions out, using the
registered model and the same bundle code as the API."""

from __future__ import annotations

import argparse

from gendetect.bundle import explanations_as_json
from gendetect.config import get_settings
from gendetect.data.io import read_table, write_table
from gendetect.tracking import load_registered_bundle


def cli_main(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    settings = get_settings()
    bundle, ref = load_registered_bundle(args.model_uri or settings.resolved_model_uri, settings)
    df = read_table(args.data)
    decisions = explanations_as_json(bundle.score_frame(df, source=args.data))
    out = df.join(decisions.add_prefix("gd_"))
    out["gd_model_version"] = ref.version
    write_table(out, args.out)
    print(
        f"scored {len(out):,} rows with {ref.name} v{ref.version}: "
        f"{int(decisions['is_fraud'].sum()):,} flagged -> {args.out}"
    )
    return 0
