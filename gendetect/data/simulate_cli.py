"""`gendetect simulate`: the profile switch. The default profile is the
handbook's simulation (gendetect.data.simulator), the rich one adds devices,
channels, category codes, gaps and a device ring (gendetect.data.rich)."""

from __future__ import annotations

import argparse

from gendetect.errors import CliError


def cli_main(args: argparse.Namespace) -> int:
    from gendetect.data import simulator

    if getattr(args, "profile", "default") != "rich":
        return simulator.cli_main(args)
    from gendetect.data.io import WRITE_SUFFIXES, write_table
    from gendetect.data.rich import simulate_rich

    if getattr(args, "amount_factor", 1.0) != 1.0 or getattr(args, "age_groups", False):
        raise CliError("--amount-factor and --age-groups apply to the default profile only")
    # Check the output format before spending time simulating.
    if not str(args.out).lower().endswith(WRITE_SUFFIXES):
        raise CliError(f"--out must end with one of {', '.join(WRITE_SUFFIXES)}: {args.out}")
    try:
        df = simulate_rich(n_customers=args.customers, n_terminals=args.terminals,
                           days=args.days, start_date=args.start_date, seed=args.seed)
    except ValueError as exc:  # bad numbers or an unparseable --start-date
        raise CliError(str(exc)) from exc
    if not len(df):
        # An empty file trains nothing and scores nothing: say so instead of exit 0.
        raise CliError(f"no transactions in {args.days} day(s) of {args.customers} customer(s): "
                       "raise --days or --customers; nothing written")
    write_table(df, args.out)
    rate = float(df["is_fraud"].mean())
    print(f"wrote {len(df)} transactions (fraud rate {rate:.2%}, rich profile) to {args.out}")
    return 0
