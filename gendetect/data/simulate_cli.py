"""`gendetect simulate`: the default profile is the handbook's simulation
(gendetect.data.simulator), the rich one adds devices, channels, category
codes, gaps and a device ring (gendetect.data.rich)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pandas as pd

from gendetect.errors import CliError


def _simulation(args: argparse.Namespace) -> tuple[Callable[[], pd.DataFrame], str]:
    """The profile's simulation (not run yet) and how the summary names it."""
    common = {"n_customers": args.customers, "n_terminals": args.terminals, "days": args.days,
              "start_date": args.start_date, "seed": args.seed}
    amount_factor = getattr(args, "amount_factor", 1.0)
    age_groups = getattr(args, "age_groups", False)
    if getattr(args, "profile", "default") == "rich":
        from gendetect.data.rich import simulate_rich

        if amount_factor != 1.0 or age_groups:
            raise CliError("--amount-factor and --age-groups apply to the default profile only")
        return lambda: simulate_rich(**common), ", rich profile"
    from gendetect.data.simulator import simulate_transactions

    return lambda: simulate_transactions(**common, amount_factor=amount_factor,
                                         age_groups=age_groups), ""


def cli_main(args: argparse.Namespace) -> int:
    from gendetect.data.io import WRITE_SUFFIXES, write_table

    simulate, profile = _simulation(args)
    # Check the output format before spending time simulating.
    if not str(args.out).lower().endswith(WRITE_SUFFIXES):
        raise CliError(f"--out must end with one of {', '.join(WRITE_SUFFIXES)}: {args.out}")
    try:
        df = simulate()
    except ValueError as exc:  # bad numbers or an unparseable --start-date
        raise CliError(str(exc)) from exc
    if not len(df):
        # An empty file trains nothing and scores nothing: say so instead of exit 0.
        raise CliError(f"no transactions in {args.days} day(s) of {args.customers} customer(s): "
                       "raise --days or --customers; nothing written")
    write_table(df, args.out)
    rate = float(df["is_fraud"].mean())
    print(f"wrote {len(df)} transactions (fraud rate {rate:.2%}{profile}) to {args.out}")
    return 0
