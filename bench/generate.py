"""Write a synthetic company of any size as the import CSVs: the same seed, the same bytes.

    .venv/bin/python -m bench.generate OUT_DIR [--employees 100000] [--suppliers 5000]
        [--grants 20000] [--third-parties 1000] [--seed 1]

writes OUT_DIR/employees.csv, grants.csv, suppliers.csv and third_parties.csv with the columns
``tickler import`` reads (``jobs.imports.columns``, so they cannot drift apart), loadable with

    tickler import employees OUT_DIR/employees.csv   (then suppliers, third-parties, grants)

The mix follows the demo data set, so that every shipped program has work at scale:
employees mostly in the US (the option exchange's eligibility), hired 1990-2003 with a few
later (not yet eligible) and some terminated, a few directors and officers, some agents (FCPA);
grants to the first employees in turn, priced 0.40-15.00 so that about four in five are at or
above the exchange's 3.01 minimum, some inside its look-back window; suppliers 2 % contract
manufacturers, 18 % direct, the rest indirect (the conflict-minerals waves); third parties of
the four FCPA roles starting 2015-2025. Names and addresses are made up (``.example`` domains,
employees at ``example.com``); the data is deterministic in ``--seed`` and the sizes only
(``random.Random(seed)``, no clock, no environment).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from jobs.imports import EmployeeRow, GrantRow, Row, SupplierRow, ThirdPartyRow, columns

FIRST = [
    "Pat",
    "Riley",
    "Morgan",
    "Avery",
    "Jordan",
    "Sam",
    "Alex",
    "Dana",
    "Chris",
    "Taylor",
    "Jamie",
    "Casey",
    "Quinn",
    "Rowan",
    "Eleanor",
    "Hiroshi",
    "Amara",
    "Luis",
    "Mei",
    "Omar",
]
LAST = [
    "Quinn",
    "Vance",
    "Ellis",
    "Brooks",
    "Okafor",
    "Patel",
    "Kim",
    "Novak",
    "Rivera",
    "Chen",
    "Garcia",
    "Müller",
    "Nakamura",
    "Haddad",
    "Kowalski",
    "O'Neil",
    "Santos",
    "Lee",
    "Dubois",
]
COUNTRIES = ["US"] * 8 + ["CA", "GB", "DE", "IN", "JP"]
THIRD_ROLES = ["distributor", "consultant", "jv_partner", "agent"]
WORDS = [
    "Harbor",
    "Pacific",
    "Summit",
    "Tri-Valley",
    "Bright",
    "Northwind",
    "Cobalt",
    "Granite",
    "Meridian",
    "Foxhollow",
    "Quill",
    "Cedar",
    "Atlas",
    "Orion",
    "Silver Creek",
    "Lumen",
]
TRADES = [
    "Circuit Assembly",
    "Precision Metals",
    "Electronics",
    "Plastics",
    "Optics",
    "Cable & Wire",
    "Fasteners",
    "Components",
    "Contract Manufacturing",
    "Logistics",
]
FORMS = ["Ltd.", "Inc.", "GmbH", "Co., Ltd.", "S.A.", "LLC"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    employees: int
    suppliers: int
    grants: int
    third_parties: int


def _day(rand: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rand.randrange((last - first).days + 1))


def _person(rand: random.Random, n: int) -> tuple[str, str]:
    first, last = rand.choice(FIRST), rand.choice(LAST)
    handle = f"{first}.{last}".lower().replace("'", "").replace("ü", "u")
    return f"{first} {last}", f"{handle}.{n}@example.com"


def _company(rand: random.Random, n: int) -> tuple[str, str]:
    word, trade = rand.choice(WORDS), rand.choice(TRADES)
    slug = f"{word}-{trade}".lower().replace(" ", "-").replace("&", "and").replace(",", "")
    return f"{word} {trade} {rand.choice(FORMS)}", f"compliance@{slug}-{n}.example"


def employees(rand: random.Random, count: int) -> Iterator[list[str]]:
    """Yield employee rows: E0000001 is a director, every 500th an officer, every 50th an
    agent; 1 in 10 hired after the exchange opened, 1 in 20 terminated."""
    managers = max(1, count // 50)
    for n in range(1, count + 1):
        name, email = _person(rand, n)
        if rand.random() < 0.1:  # hired after the exchange opened: not eligible
            hired = _day(rand, date(2003, 1, 1), date(2025, 6, 30))
        else:
            hired = _day(rand, date(1990, 1, 1), date(2002, 12, 18))
        ended = _day(rand, hired + timedelta(days=30), date(2026, 6, 30)) if n % 20 == 0 else None
        director, officer = n == 1 or n % 2000 == 0, n % 500 == 0
        role = (
            "director"
            if director
            else "officer"
            if officer
            else "agent"
            if n % 50 == 0
            else "employee"
        )
        manager = f"manager.{n % managers}@example.com" if role == "employee" else ""
        yield [
            f"E{n:07d}",
            name,
            email,
            rand.choice(COUNTRIES),
            hired.isoformat(),
            ended.isoformat() if ended else "",
            str(director).lower(),
            str(officer).lower(),
            role,
            manager,
        ]


def grants(rand: random.Random, count: int, employees: int) -> Iterator[list[str]]:
    """Yield grant rows to the employees in turn (E0000001, E0000002, …, then round again)."""
    for n in range(1, count + 1):
        holder = (n - 1) % max(1, employees) + 1
        shares = rand.choice([250, 500, 1000, 2000, 5000])
        unexercised = shares - rand.choice([0, 0, 0, shares // 5])
        price = rand.choice([0.40, 1.25, 2.18, 3.40, 4.50, 6.00, 8.75, 9.50, 11.00, 14.25, 15.00])
        granted = _day(rand, date(1996, 1, 1), date(2002, 12, 18))
        yield [
            f"G{n:07d}",
            f"E{holder:07d}",
            granted.isoformat(),
            str(shares),
            str(unexercised),
            f"{price:.2f}",
        ]


def suppliers(rand: random.Random, count: int) -> Iterator[list[str]]:
    for n in range(1, count + 1):
        name, email = _company(rand, n)
        roll = rand.random()
        tier = "contract_manufacturer" if roll < 0.02 else "direct" if roll < 0.2 else "indirect"
        owner = f"buyer.{n % 20}@example.com"
        yield [f"S{n:06d}", name, email, tier, owner]


def third_parties(rand: random.Random, count: int) -> Iterator[list[str]]:
    for n in range(1, count + 1):
        name, email = _company(rand, n)
        start = _day(rand, date(2015, 1, 1), date(2025, 12, 31))
        yield [f"T{n:06d}", name, email, rand.choice(THIRD_ROLES), start.isoformat()]


def write(folder: Path, sizes: Sizes, seed: int) -> dict[str, int]:
    """Write the four CSVs into ``folder``; return the rows written to each file.

    Each file has a random stream of its own (seeded from ``seed`` and the file's name), so
    changing one size leaves the other files' bytes as they were.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, type[Row], Iterator[list[str]]]] = [
        ("employees.csv", EmployeeRow, employees(_rand(seed, "employees"), sizes.employees)),
        ("grants.csv", GrantRow, grants(_rand(seed, "grants"), sizes.grants, sizes.employees)),
        ("suppliers.csv", SupplierRow, suppliers(_rand(seed, "suppliers"), sizes.suppliers)),
        (
            "third_parties.csv",
            ThirdPartyRow,
            third_parties(_rand(seed, "third_parties"), sizes.third_parties),
        ),
    ]
    written: dict[str, int] = {}
    for name, model, rows in files:
        with (folder / name).open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(columns(model))
            count = 0
            for row in rows:
                writer.writerow(row)
                count += 1
        written[name] = count
    return written


def _rand(seed: int, stream: str) -> random.Random:
    return random.Random(f"{seed}:{stream}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="folder to write the CSVs into")
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--suppliers", type=int, default=5_000)
    parser.add_argument("--grants", type=int, default=20_000)
    parser.add_argument("--third-parties", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sizes = Sizes(
        employees=args.employees,
        suppliers=args.suppliers,
        grants=args.grants,
        third_parties=args.third_parties,
    )
    for name, count in write(args.out, sizes, args.seed).items():
        print(f"{args.out / name}: {count} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
