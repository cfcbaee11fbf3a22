#!/usr/bin/env python3
"""Realistic inputs for the predictions example: fans' predictions of the 2022 World Cup's 64
matches, by phase (1 group stage, 2 round of 16, 3 quarter-finals, 4 semi-finals, the
third-place match and the final), with plausible scores (each side's goals Poisson-distributed
around the tournament's 1.3 goals per team and match, capped at 9). Later phases draw more
predictions (fans predict the big matches more). Deterministic for a given --seed.

  dataset.py -n 10000 > data.json               one JSON array (loadgen -f data.json, wrk's script)
  dataset.py -n 100 --lines                     one JSON object per line (curl loops)
  dataset.py -n 100 --invalid 0.1               about 10% inputs that break one rule each
"""
import argparse
import json
import math
import random
import sys

GROUP_STAGE = [
    ("Qatar", "Ecuador"), ("Senegal", "Netherlands"), ("Qatar", "Senegal"), ("Netherlands", "Ecuador"),
    ("Ecuador", "Senegal"), ("Netherlands", "Qatar"),
    ("England", "Iran"), ("USA", "Wales"), ("Wales", "Iran"), ("England", "USA"), ("Wales", "England"), ("Iran", "USA"),
    ("Argentina", "Saudi Arabia"), ("Mexico", "Poland"), ("Poland", "Saudi Arabia"), ("Argentina", "Mexico"),
    ("Poland", "Argentina"), ("Saudi Arabia", "Mexico"),
    ("Denmark", "Tunisia"), ("France", "Australia"), ("Tunisia", "Australia"), ("France", "Denmark"),
    ("Tunisia", "France"), ("Australia", "Denmark"),
    ("Germany", "Japan"), ("Spain", "Costa Rica"), ("Japan", "Costa Rica"), ("Spain", "Germany"), ("Japan", "Spain"),
    ("Costa Rica", "Germany"),
    ("Morocco", "Croatia"), ("Belgium", "Canada"), ("Belgium", "Morocco"), ("Croatia", "Canada"),
    ("Croatia", "Belgium"), ("Canada", "Morocco"),
    ("Switzerland", "Cameroon"), ("Brazil", "Serbia"), ("Cameroon", "Serbia"), ("Brazil", "Switzerland"),
    ("Serbia", "Switzerland"), ("Cameroon", "Brazil"),
    ("Uruguay", "South Korea"), ("Portugal", "Ghana"), ("South Korea", "Ghana"), ("Portugal", "Uruguay"),
    ("Ghana", "Uruguay"), ("South Korea", "Portugal"),
]
ROUND_OF_16 = [("Netherlands", "USA"), ("Argentina", "Australia"), ("France", "Poland"), ("England", "Senegal"),
               ("Japan", "Croatia"), ("Brazil", "South Korea"), ("Morocco", "Spain"), ("Portugal", "Switzerland")]
QUARTER_FINALS = [("Croatia", "Brazil"), ("Netherlands", "Argentina"), ("Morocco", "Portugal"), ("England", "France")]
# Phase 4 holds the semi-finals, the third-place match and the final.
FINALS = [("Argentina", "Croatia"), ("France", "Morocco"), ("Croatia", "Morocco"), ("Argentina", "France")]

MATCHES = ([(m, 1) for m in GROUP_STAGE] + [(m, 2) for m in ROUND_OF_16] + [(m, 3) for m in QUARTER_FINALS] +
           [(m, 4) for m in FINALS])
WEIGHT = {1: 1.0, 2: 2.0, 3: 3.0, 4: 5.0}  # predictions drawn per match, relative


def goals(rng, mean=1.3):
    # Knuth's Poisson sampler; 9 at most.
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit or k == 9:
            return k
        k += 1


def prediction(rng):
    (team1, team2), phase = rng.choices(MATCHES, weights=[WEIGHT[p] for _, p in MATCHES])[0]
    return {"team1": team1, "team2": team2, "score": f"{goals(rng)}-{goals(rng)}", "phase": phase}


def broken(rng):
    """A prediction that breaks exactly one rule, for the validation path."""
    p = prediction(rng)
    rule = rng.randrange(6)
    if rule == 0:
        del p["team1"]
    elif rule == 1:
        p["team2"] = "  "
    elif rule == 2:
        p["team2"] = p["team1"]
    elif rule == 3:
        p["score"] = rng.choice(["2-", "two-one", "100-0", "-1-0"])
    elif rule == 4:
        p["phase"] = rng.choice([0, 5, "4"])
    else:
        p["stadium"] = "Lusail"
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="how many inputs (default 1000)")
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument("--invalid", type=float, default=0.0, help="fraction of inputs that break one rule")
    ap.add_argument("--lines", action="store_true", help="one object per line instead of one array")
    args = ap.parse_args()
    if args.n < 0 or not 0 <= args.invalid <= 1:
        ap.error("-n must be >= 0 and --invalid in 0..1")
    rng = random.Random(args.seed)
    items = [broken(rng) if rng.random() < args.invalid else prediction(rng) for _ in range(args.n)]
    if args.lines:
        for item in items:
            sys.stdout.write(json.dumps(item) + "\n")
    else:
        json.dump(items, sys.stdout)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
