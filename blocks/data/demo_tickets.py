"""The bundled multi-input demo table, `recipes/data/tickets.csv`, generated deterministically.

A support ticket is escalated when at least two of three independent signals say so: the
text is angry (words like "broken", "refund"), the customer's plan is a premium one, the order
is large. Each signal alone decides the label in only 3 of 4 tickets (the other two outvote it
one time in four), the plan and order together also in 3 of 4 (when they disagree, the text
decides), and all three together decide it always, up to the noise in the order value:
text only ~75 %, tabular only ~75 %, all inputs ~98 % (tests/data/test_demo_tickets.py).
"""

from __future__ import annotations

import csv
import io

import numpy as np

ANGRY = ["broken", "refund", "crash", "angry", "failed", "unacceptable", "urgent", "worst",
         "lost", "charged"]
CALM = ["thanks", "question", "curious", "wondering", "info", "later", "great", "happy",
        "update", "please"]
NEUTRAL = ["order", "account", "the", "my", "app", "since", "today", "login", "page", "item",
           "delivery", "invoice", "it", "was", "is", "about", "this", "again", "support", "team"]
PREMIUM = ["gold", "platinum", "business"]
BASIC = ["free", "starter", "student"]
ROWS = 2400


def _text(rng: np.random.Generator, angry: bool) -> str:
    signal = ANGRY if angry else CALM
    words = list(rng.choice(NEUTRAL, size=int(rng.integers(4, 10))))
    for _ in range(int(rng.integers(1, 3))):
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(signal)))
    text = " ".join(words)
    return text.capitalize() + ("!" if angry and rng.random() < 0.5 else ".")


def tickets_csv(rows: int = ROWS, seed: int = 22) -> str:
    """The table as CSV text: review, plan, order_value, escalate (yes/no)."""
    rng = np.random.default_rng(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["review", "plan", "order_value", "escalate"])
    for _ in range(rows):
        angry, premium, large = (bool(b) for b in rng.integers(0, 2, size=3))
        plan = str(rng.choice(PREMIUM if premium else BASIC))
        value = rng.normal(160.0 if large else 60.0, 20.0)
        label = "yes" if angry + premium + large >= 2 else "no"
        writer.writerow([_text(rng, angry), plan, f"{max(value, 1.0):.2f}", label])
    return out.getvalue()


if __name__ == "__main__":  # python -m blocks.data.demo_tickets > blocks/recipes/data/tickets.csv
    print(tickets_csv(), end="")
