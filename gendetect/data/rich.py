"""The `rich` simulated table: what a real card table looks like beside the
handbook's four columns.

On top of the default simulation (gendetect.data.simulator, unchanged) every
transaction gets a device, a channel, the merchant's category code (mcc,
hundreds of levels), the card's e-mail domain (~40 levels) and the account's
age, with gaps at realistic rates (IEEE-CIS-like tables miss device and
e-mail data on a fifth of their rows). The customer is called card_id and
the terminal merchant_id, so that the table also looks foreign to the
built-in `transactions` schema (it has its own: `rich`).

It adds a fourth fraud scenario that no single transaction reveals: a
device ring (card testing, account takeover). A fresh device is used by many
stolen cards within an hour; each card pays an amount from its own history,
at one of its own merchants, on an ordinary channel. Only a declared
velocity feature (distinct cards per device over 1h) sees it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gendetect.data.simulator import _parse_start, simulate_transactions

RING_SCENARIO = 4
CHANNELS = ("pos", "ecom", "app")
N_MCC = 300
EMAIL_DOMAINS = 40
# Gap rates: share of rows where the value is missing.
MISSING_DEVICE = 0.08
MISSING_EMAIL = 0.20
MISSING_ACCOUNT_AGE = 0.05
# Device ring: events per day (at least one) per 1000 cards, and cards per ring.
RINGS_PER_1000_CARDS_PER_DAY = 0.5
RING_CARDS = (6, 13)  # drawn in [low, high)
RING_SPAN_SECONDS = 3600
SHARED_DEVICE_SHARE = 0.05  # cards that share a device with another card (households)

COLUMNS = (
    "transaction_id", "timestamp", "card_id", "merchant_id", "device_id", "channel", "mcc",
    "email_domain", "amount", "account_age_days", "is_fraud", "fraud_scenario",
)

_STREAMS = ("devices", "channels", "mcc", "email", "age", "gaps", "ring")


def _device_names(n: int, rng: np.random.Generator) -> np.ndarray:
    # Opaque identifiers, as device fingerprints are: 12 hex digits.
    codes = rng.choice(16**12, size=n, replace=False)
    return np.array([f"d{c:012x}" for c in codes], dtype=object)


def _zipf_weights(n: int, rng: np.random.Generator, exponent: float = 1.1) -> np.ndarray:
    # A few frequent levels and a long tail, in a random order of levels.
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(w / w.sum())


def _card_devices(n_cards: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two device slots per card (the second used 30% of the time when the
    card has one); a few cards share their first device with another card."""
    has_second = rng.random(n_cards) < 0.3
    n_devices = n_cards + int(has_second.sum())
    names = _device_names(n_devices, rng)
    first = names[:n_cards].copy()
    second = first.copy()
    second[has_second] = names[n_cards:]
    sharing = np.flatnonzero(rng.random(n_cards) < SHARED_DEVICE_SHARE)
    first[sharing] = first[rng.integers(0, n_cards, size=sharing.size)]
    return first, second


def _ring_rows(genuine: pd.DataFrame, n_cards: int, days: int, start: pd.Timestamp,
               rng: np.random.Generator) -> pd.DataFrame:
    """Scenario 4: per ring, a fresh device and 6-12 active cards, one
    transaction each within an hour, every value taken from the card's own
    genuine history (amount, merchant, channel, e-mail domain)."""
    per_day = max(1, round(n_cards * RINGS_PER_1000_CARDS_PER_DAY / 1000))
    # The card's own genuine history (not the other scenarios' frauds).
    genuine = genuine[genuine["fraud_scenario"].to_numpy() == 0]
    by_card = genuine.groupby("card_id").indices
    cards = np.array(sorted(by_card))
    rows: list[dict[str, object]] = []
    devices = _device_names(per_day * days, rng)
    for ring in range(per_day * days):
        day = ring // per_day
        size = min(int(rng.integers(*RING_CARDS)), cards.size)
        chosen = rng.choice(cards, size=size, replace=False)
        # Rings run in the day (8:00-21:00), when card testing hides best.
        begin = start + pd.Timedelta(days=day, seconds=int(rng.integers(8 * 3600, 21 * 3600)))
        offsets = np.sort(rng.integers(0, RING_SPAN_SECONDS, size=size))
        for card, offset in zip(chosen, offsets, strict=True):
            own = genuine.iloc[rng.choice(by_card[card])]
            rows.append({
                "timestamp": begin + pd.Timedelta(seconds=int(offset)),
                "card_id": card, "merchant_id": own["merchant_id"], "device_id": devices[ring],
                "channel": "ecom" if own["channel"] == "pos" else own["channel"],
                "mcc": own["mcc"], "email_domain": own["email_domain"],
                # A value from the card's own history, a little jittered.
                "amount": round(float(own["amount"]) * float(rng.uniform(0.9, 1.1)), 2),
                "account_age_days": own["account_age_days"],
                "is_fraud": 1, "fraud_scenario": RING_SCENARIO,
            })
    return pd.DataFrame(rows)


def simulate_rich(
    *,
    n_customers: int = 5000,
    n_terminals: int = 10000,
    days: int = 60,
    start_date: str | pd.Timestamp = "2024-01-01",
    seed: int = 0,
) -> pd.DataFrame:
    """The rich table (COLUMNS), sorted by time, transaction ids 0..n-1.

    Scenarios 1-3 are the default simulation's (same seed, same frauds);
    scenario 4 is the device ring. The same arguments give the same frame."""
    base = simulate_transactions(n_customers=n_customers, n_terminals=n_terminals, days=days,
                                 start_date=start_date, seed=seed)
    # Streams of their own (not the default simulation's), one per column.
    children = np.random.SeedSequence([seed, 0x41C4]).spawn(len(_STREAMS))
    rng = {name: np.random.default_rng(c) for name, c in zip(_STREAMS, children, strict=True)}
    n = len(base)
    card = base["customer_id"].to_numpy()
    terminal = base["terminal_id"].to_numpy()

    first, second = _card_devices(n_customers, rng["devices"])
    use_second = rng["devices"].random(n) < 0.3
    device = np.where(use_second, second[card], first[card])

    # Each card has its own channel mix.
    mix = rng["channels"].dirichlet((6.0, 3.0, 1.0), size=n_customers)
    u = rng["channels"].random(n)
    channel_idx = (u[:, None] > np.cumsum(mix[card], axis=1)[:, :-1]).sum(axis=1)
    channel = np.asarray(CHANNELS, dtype=object)[channel_idx]

    codes = np.sort(rng["mcc"].choice(np.arange(1000, 10000), size=N_MCC, replace=False))
    merchant_mcc = rng["mcc"].choice(codes, size=n_terminals, p=_zipf_weights(N_MCC, rng["mcc"]))
    mcc = np.array([f"{c:04d}" for c in merchant_mcc], dtype=object)[terminal]

    domains = np.array([f"mail{i:02d}.example" for i in range(EMAIL_DOMAINS)], dtype=object)
    card_domain = rng["email"].choice(domains, size=n_customers,
                                      p=_zipf_weights(EMAIL_DOMAINS, rng["email"], 1.3))
    email = card_domain[card]

    opened = rng["age"].integers(0, 3650, size=n_customers)
    day = (base["timestamp"] - _parse_start(start_date)).dt.days.to_numpy()
    account_age = (opened[card] + day).astype(np.float64)

    gaps = rng["gaps"]
    device = np.where(gaps.random(n) < MISSING_DEVICE, None, device)
    email = np.where(gaps.random(n) < MISSING_EMAIL, None, email)
    account_age[gaps.random(n) < MISSING_ACCOUNT_AGE] = np.nan

    genuine = pd.DataFrame({
        "timestamp": base["timestamp"], "card_id": card, "merchant_id": terminal,
        "device_id": device, "channel": channel, "mcc": mcc, "email_domain": email,
        "amount": base["amount"], "account_age_days": account_age,
        "is_fraud": base["is_fraud"], "fraud_scenario": base["fraud_scenario"],
    })
    ring = _ring_rows(genuine, n_customers, days, _parse_start(start_date), rng["ring"])
    frame = pd.concat([genuine, ring], ignore_index=True) if len(ring) else genuine
    # Stable: ties keep the default simulation's order, ring rows after it.
    frame = frame.sort_values("timestamp", kind="stable", ignore_index=True)
    frame.insert(0, "transaction_id", np.arange(len(frame), dtype=np.int64))
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    for column in ("card_id", "merchant_id", "is_fraud", "fraud_scenario"):
        frame[column] = frame[column].astype(np.int64)
    return frame[list(COLUMNS)]
