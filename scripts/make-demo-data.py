#!/usr/bin/env python3
"""Write the demo CSVs of ``config/demo/`` (run from anywhere; the output is deterministic).

The data set reproduces the seed documents: 223 suppliers of which 4 contract manufacturers,
about 92% of them answering the RY2016 CMRT survey; employees for the 2003 option exchange,
including the holder of the slide-9 grants (E1001, Pat Quinn); FCPA third parties and
acknowledgments. Only reserved example domains are used (example.com/.org/.net, *.example).

    python scripts/make-demo-data.py [OUTPUT_DIR]
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

PACIFIC = ZoneInfo("America/Los_Angeles")
OUT = Path(__file__).resolve().parent.parent / "config" / "demo"
BUYERS = [
    "alex.rivera@example.com",
    "dana.kim@example.com",
    "jordan.patel@example.com",
    "sam.novak@example.com",
]
CM, DIRECT, INDIRECT = 4, 40, 179  # 223 suppliers

# --- suppliers --------------------------------------------------------------------------------

CONTRACT_MANUFACTURERS = [
    ("Foxhollow Contract Manufacturing Ltd.", "foxhollow-cm.example"),
    ("Nakamura Seimitsu Co., Ltd.", "nakamura-seimitsu.example"),  # a comma: quoting
    ("Zhōngshān Bright Circuit Assembly Co.", "zs-bright.example"),  # non-ASCII: UTF-8
    ("Tri-Valley Electronics Manufacturing Services", "trivalley-ems.example"),
]
WORDS_A = [
    "Acme", "Apex", "Atlas", "Beacon", "Birch", "Cascade", "Cedar", "Cobalt", "Crescent",
    "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iron Ridge", "Juniper", "Keystone",
    "Lakeshore", "Meridian", "Northwind", "Orion", "Pinnacle", "Quarry", "Redwood", "Sierra",
    "Summit", "Tidewater", "Umber", "Vertex", "Westfield", "Yarrow", "Zenith",
]  # fmt: skip
WORDS_B = [
    "Precision", "Circuits", "Metals", "Plastics", "Components", "Electronics", "Castings",
    "Fasteners", "Magnetics", "Cable", "Connectors", "Alloys", "Coatings", "Packaging",
]  # fmt: skip
SUFFIXES = ["Inc.", "Ltd.", "GmbH", "LLC", "Co.", "S.A.", "K.K.", "Pty Ltd", "B.V."]
MAILBOXES = ["cmrt", "compliance", "quality", "sales", "conflict.minerals"]


def suppliers(rng: random.Random) -> list[list[str]]:
    combos = list(itertools.product(WORDS_A, WORDS_B))
    rng.shuffle(combos)
    rows = []
    for n in range(1, CM + DIRECT + INDIRECT + 1):
        sid = f"S{n:03d}"
        if n <= CM:
            name, domain = CONTRACT_MANUFACTURERS[n - 1]
            tier = "contract_manufacturer"
        else:
            a, b = combos[n - CM - 1]
            name = f"{a} {b} {SUFFIXES[n % len(SUFFIXES)]}"
            domain = f"{a}-{b}".lower().replace(" ", "-") + ".example"
            tier = "direct" if n <= CM + DIRECT else "indirect"
        mailbox = MAILBOXES[n % len(MAILBOXES)]
        rows.append([sid, name, f"{mailbox}@{domain}", tier, BUYERS[n % len(BUYERS)]])
    return rows


# --- employees and grants ---------------------------------------------------------------------
# (id, name, country, hire date, director, executive officer, FCPA role, manager id)
EMPLOYEES: list[tuple[str, str, str, str, bool, bool, str, str]] = [
    ("E1001", "Pat Quinn", "US", "1999-04-12", False, False, "employee", "E1005"),
    ("E1002", "Eleanor Vance", "US", "1994-03-01", True, False, "director", ""),
    ("E1003", "Morgan Ellis", "US", "1995-09-18", False, True, "officer", ""),
    ("E1004", "Riley Brooks", "US", "2003-01-06", False, False, "employee", "E1005"),
    ("E1005", "Chris Okafor", "US", "1996-02-05", False, False, "employee", "E1003"),
    ("E1006", "Jamie Lindqvist", "US", "1997-06-16", False, False, "employee", "E1005"),
    ("E1007", "Taylor Nguyen", "US", "1998-01-12", False, False, "employee", "E1005"),
    ("E1008", "Avery Santos", "US", "1998-08-03", False, False, "employee", "E1005"),
    ("E1009", "Drew Kowalski", "US", "1999-01-25", False, False, "employee", "E1005"),
    ("E1010", "Casey Moreau", "US", "1999-07-19", False, False, "employee", "E1005"),
    ("E1011", "Jordan Abbott", "US", "1999-11-08", False, False, "employee", "E1005"),
    ("E1012", "Quinn Harper", "US", "2000-01-10", False, False, "employee", "E1005"),
    ("E1013", "Skyler Dubois", "US", "2000-02-14", False, False, "employee", "E1005"),
    ("E1014", "Reese Tanaka", "US", "2000-03-20", False, False, "employee", "E1005"),
    ("E1015", "Hayden Ortiz", "US", "2000-05-01", False, False, "employee", "E1005"),
    ("E1016", "Rowan Fischer", "US", "2000-06-12", False, False, "employee", "E1005"),
    ("E1017", "Parker Reyes", "US", "2000-08-21", False, False, "employee", "E1005"),
    ("E1018", "Emerson Clarke", "US", "2000-10-02", False, False, "employee", "E1005"),
    ("E1019", "Finley O'Brien", "US", "2000-11-13", False, False, "employee", "E1005"),
    ("E1020", "Sage Whitaker", "US", "2001-01-08", False, False, "employee", "E1005"),
    ("E1021", "Blake Castillo", "US", "2001-02-26", False, False, "employee", "E1005"),
    ("E1022", "Kendall Ward", "US", "2001-04-16", False, False, "employee", "E1005"),
    ("E1023", "Logan Pierce", "US", "2001-09-04", False, False, "employee", "E1005"),
    ("E1024", "Marley Hughes", "US", "2001-11-19", False, False, "employee", "E1005"),
    ("E1025", "Peyton Rossi", "US", "2002-01-14", False, False, "employee", "E1005"),
    ("E1026", "Cameron Lee", "US", "2002-03-11", False, False, "employee", "E1005"),
    ("E1027", "Dakota Singh", "US", "2002-04-22", False, False, "employee", "E1005"),
    ("E1028", "Harley Bennett", "US", "2002-05-06", False, False, "employee", "E1005"),
    ("E1029", "Jesse Alvarez", "US", "2002-07-08", False, False, "employee", "E1005"),
    ("E1030", "Robin Schultz", "US", "2002-08-19", False, False, "employee", "E1005"),
    ("E1031", "Shawn Murphy", "US", "2002-09-30", False, False, "employee", "E1005"),
    ("E1032", "Toni Marsh", "US", "2002-11-04", False, False, "employee", "E1005"),
    ("E1033", "Ari Goldberg", "US", "2002-12-18", False, False, "employee", "E1005"),
    ("E1034", "Lane Carter", "US", "2002-12-19", False, False, "employee", "E1005"),
    ("E1035", "Oliver Pemberton", "GB", "2000-04-03", False, False, "employee", "E1003"),
    ("E1036", "Imogen Hale", "GB", "2001-06-18", False, False, "employee", "E1035"),
    ("E1037", "Haruto Sato", "JP", "2000-09-11", False, False, "employee", "E1003"),
    ("E1038", "Li Wei", "CN", "2001-03-19", False, False, "employee", "E1003"),
    ("E1039", "Jürgen Braun", "DE", "2001-10-15", False, False, "employee", "E1003"),
    ("E1040", "Mariana Costa", "BR", "2002-02-04", False, False, "agent", "E1003"),
]

# (employee, grant date, shares, unexercised, price). E1001's four are slide 9 of the deck.
GRANTS: list[tuple[str, str, int, int, str]] = [
    ("E1001", "2000-05-20", 1000, 800, "6.00"),
    ("E1001", "2001-03-05", 1000, 1000, "4.50"),
    ("E1001", "2002-02-28", 500, 500, "2.18"),  # below 3.01: not exchanged
    ("E1001", "2002-07-01", 500, 500, "0.40"),  # look-back window: exchanged whatever its price
    # Excluded by role, however high the price.
    ("E1002", "1999-06-01", 20000, 20000, "12.00"),
    ("E1003", "2000-01-15", 50000, 40000, "9.50"),
    # Eligible: U.S., hired before 2002-12-19, at least one grant at 3.01 or more.
    ("E1005", "1996-02-05", 4000, 2500, "14.25"),
    ("E1005", "2001-08-01", 2000, 2000, "3.40"),
    ("E1006", "1997-06-16", 3000, 3000, "11.00"),
    ("E1007", "1998-01-12", 2500, 2000, "8.75"),
    ("E1007", "2002-08-15", 1000, 1000, "1.25"),  # look-back
    ("E1008", "1998-08-03", 2000, 2000, "3.01"),  # exactly the threshold: eligible
    ("E1009", "1999-01-25", 1500, 1500, "7.80"),
    ("E1010", "1999-07-19", 2000, 1200, "10.10"),
    ("E1010", "2002-10-01", 800, 800, "0.85"),  # look-back
    ("E1011", "1999-11-08", 1200, 1200, "15.60"),
    ("E1012", "2000-01-10", 1000, 1000, "18.00"),
    ("E1013", "2000-02-14", 1000, 1000, "21.50"),
    ("E1014", "2000-03-20", 1600, 1600, "19.75"),
    ("E1014", "2002-06-19", 400, 400, "1.60"),  # first day of the look-back window
    ("E1015", "2000-05-01", 1000, 1000, "6.00"),
    ("E1016", "2000-06-12", 1800, 1800, "5.25"),
    ("E1017", "2000-08-21", 900, 900, "4.10"),
    ("E1018", "2000-10-02", 1100, 1100, "3.95"),
    ("E1019", "2000-11-13", 1300, 1300, "4.80"),
    ("E1020", "2001-01-08", 1000, 1000, "3.60"),
    ("E1021", "2001-02-26", 2000, 1500, "4.20"),
    ("E1021", "2002-12-19", 500, 500, "0.95"),  # last day of the look-back window
    ("E1022", "2001-04-16", 700, 700, "3.25"),
    # Not eligible: every grant below 3.01.
    ("E1023", "2001-09-04", 1000, 1000, "2.18"),
    ("E1024", "2001-11-19", 1000, 1000, "3.00"),  # one cent under
    ("E1025", "2002-01-14", 800, 800, "1.10"),
    ("E1026", "2002-03-11", 600, 600, "0.75"),
    # Not eligible: hired on or after the offer opened.
    ("E1033", "2002-12-18", 500, 500, "0.90"),
    ("E1034", "2002-12-19", 500, 500, "0.95"),
    ("E1004", "2003-01-06", 500, 500, "1.05"),
    # Not eligible: outside the U.S.
    ("E1035", "2000-04-03", 3000, 3000, "7.25"),
    ("E1037", "2000-09-11", 2000, 2000, "5.10"),
    ("E1038", "2001-03-19", 2500, 2500, "11.00"),
]


def _email(name: str) -> str:
    ascii_name = name.replace("ü", "ue").replace("'", "")
    return ascii_name.lower().replace(" ", ".") + "@example.com"


def employees() -> list[list[str]]:
    emails = {e[0]: _email(e[1]) for e in EMPLOYEES}
    return [
        [eid, name, emails[eid], country, hired, "", _yn(director), _yn(officer), role,
         emails.get(manager, "")]
        for eid, name, country, hired, director, officer, role, manager in EMPLOYEES
    ]  # fmt: skip


def _yn(value: bool) -> str:
    return "true" if value else "false"


def grants() -> list[list[str]]:
    return [
        [f"G{n:04d}", eid, day, str(shares), str(unexercised), price]
        for n, (eid, day, shares, unexercised, price) in enumerate(GRANTS, 1)
    ]


THIRD_PARTIES = [
    ["T001", "Harborline Distribution S.A.", "compliance@harborline.example", "distributor",
     "2016-05-02"],
    ["T002", "Quill & Barrow Advisory LLC", "partners@quill-barrow.example", "consultant",
     "2017-02-15"],
    ["T003", "Pacific Rim Optics Joint Venture", "legal@pacrim-optics.example", "jv_partner",
     "2017-09-01"],
    ["T004", "Ruiz Representaciones Comerciales", "marco@ruiz-rep.example", "agent",
     "2018-03-12"],
]  # fmt: skip

# --- the scenario: what came back -------------------------------------------------------------

CM_PROGRAM = "conflict-minerals-2016"
OFFER = "option-exchange-2003"
FCPA = "fcpa"
WAVES = {  # tier -> (send, response due), as in config/defaults/conflict-minerals-2016.toml
    "contract_manufacturer": (date(2017, 1, 9), date(2017, 2, 10)),
    "direct": (date(2017, 1, 9), date(2017, 2, 10)),
    "indirect": (date(2017, 1, 23), date(2017, 2, 24)),
}
RESPONDED, INCOMPLETE, CORRECTED = 205, 12, 8
ISSUES = [
    "smelter list tab is empty",
    "declaration question 4 (3TG from covered countries) unanswered",
    "company-level answers contradict the smelter list",
    "uses CMRT 3.02; please send version 4.20 or later",
    "product list missing for a product-level declaration",
    "authorizer name and date left blank",
]


def _instant(day: date, rng: random.Random) -> datetime:
    """Return a business-hours instant on ``day`` (moved off weekends) in Pacific time."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime.combine(day, time(rng.randint(8, 17), rng.randrange(0, 60, 1)), PACIFIC)


def _event(at: datetime, kind: str, program: str, person: str, **payload: object) -> list[str]:
    return [at.isoformat(), kind, program, person, json.dumps(payload, sort_keys=True)]


def cmrt_events(rng: random.Random, supplier_rows: Sequence[Sequence[str]]) -> list[list[str]]:
    ids = [row[0] for row in supplier_rows]
    tiers = {row[0]: row[3] for row in supplier_rows}
    # Every contract manufacturer answers; the silent ones are ordinary suppliers.
    silent = set(rng.sample(ids[CM:], len(ids) - RESPONDED))
    responders = [s for s in ids if s not in silent]
    incomplete = rng.sample(responders, INCOMPLETE)
    corrected = set(incomplete[:CORRECTED])
    events: list[list[str]] = []
    for sid in responders:
        send, due = WAVES[tiers[sid]]
        # Three in four answer by the due date; the rest within four weeks after it.
        if rng.random() < 0.75:
            day = send + timedelta(days=rng.randint(1, (due - send).days))
        else:
            day = due + timedelta(days=rng.randint(1, 28))
        at = _instant(day, rng)
        if sid in incomplete:
            issues = ISSUES[len(events) % len(ISSUES)]
            events.append(
                _event(at, "cmrt_response", CM_PROGRAM, f"supplier:{sid}", complete=False,
                       issues=issues)
            )  # fmt: skip
            if sid in corrected:
                fixed = _instant(day + timedelta(days=rng.randint(7, 21)), rng)
                events.append(
                    _event(fixed, "cmrt_response", CM_PROGRAM, f"supplier:{sid}", complete=True)
                )
        else:
            events.append(_event(at, "cmrt_response", CM_PROGRAM, f"supplier:{sid}", complete=True))
    return events


def _pt(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=PACIFIC)


# Elections between the opening (2002-12-19) and the cutoff (2003-01-20 21:00 PST).
ELECTIONS = [
    ("E1001", "2003-01-14T10:12:00"),
    ("E1005", "2002-12-19T17:05:00"),
    ("E1006", "2002-12-20T10:40:00"),
    ("E1007", "2003-01-06T09:15:00"),
    ("E1008", "2003-01-07T14:30:00"),
    ("E1010", "2003-01-09T11:02:00"),
    ("E1012", "2003-01-08T16:20:00"),  # withdraws on 2003-01-15
    ("E1014", "2003-01-13T08:55:00"),
    ("E1016", "2003-01-16T13:45:00"),  # leaves the company on 2003-05-15: no new grant
    ("E1019", "2003-01-17T15:10:00"),
    ("E1021", "2003-01-20T20:45:00"),  # fifteen minutes before the cutoff
]
WITHDRAWAL = ("E1012", "2003-01-15T09:30:00")
TERMINATION = ("E1016", "2003-05-15T17:00:00", "2003-05-15")
ACKS = [
    ("employee:E1003", "2017-01-12T09:20:00"),
    ("employee:E1001", "2017-01-18T14:05:00"),
    ("third_party:T001", "2017-01-20T11:30:00"),
    ("employee:E1002", "2017-02-03T10:00:00"),
    ("employee:E1035", "2017-02-07T08:45:00"),
    ("employee:E1040", "2017-02-20T16:10:00"),
    ("third_party:T002", "2017-03-01T13:25:00"),
    ("third_party:T003", "2017-09-20T10:50:00"),
    ("employee:E1003", "2018-03-15T09:05:00"),  # yearly renewal
    ("third_party:T001", "2018-03-20T15:40:00"),  # yearly renewal
    # T004 (an agent since 2018-03-12) never acknowledges: the demo's escalation.
]


def scenario(rng: random.Random, supplier_rows: Sequence[Sequence[str]]) -> list[list[str]]:
    events = cmrt_events(rng, supplier_rows)
    events += [_event(_pt(at), "election", OFFER, f"employee:{eid}") for eid, at in ELECTIONS]
    events.append(_event(_pt(WITHDRAWAL[1]), "withdrawal", OFFER, f"employee:{WITHDRAWAL[0]}"))
    eid, at, day = TERMINATION
    # A termination is about the person, not one program: it goes in with no program.
    events.append(_event(_pt(at), "termination", "", f"employee:{eid}", date=day))
    events += [
        _event(_pt(at), "fcpa_ack", FCPA, person, policy_version="2017-1") for person, at in ACKS
    ]
    return sorted(events, key=lambda e: (datetime.fromisoformat(e[0]), e[3]))


# --- output -----------------------------------------------------------------------------------


def write(path: Path, header: str, rows: Iterable[Sequence[str]]) -> int:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header.split(","))
        count = 0
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def main(out: Path) -> None:
    rng = random.Random(2017)  # fixed seed: the same files on every run
    out.mkdir(parents=True, exist_ok=True)
    supplier_rows = suppliers(rng)
    files = {
        "suppliers.csv": ("external_id,name,email,tier,owner_email", supplier_rows),
        "employees.csv": (
            "external_id,name,email,country,hire_date,termination_date,is_director,"
            "is_executive_officer,role,manager_email",
            employees(),
        ),
        "third_parties.csv": ("external_id,name,email,role,start_date", THIRD_PARTIES),
        "grants.csv": ("external_id,employee_id,grant_date,shares,unexercised,price", grants()),
        "scenario.csv": ("at,kind,program,person,payload", scenario(rng, supplier_rows)),
    }
    for name, (header, rows) in files.items():
        print(f"{out / name}: {write(out / name, header, rows)} rows")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
