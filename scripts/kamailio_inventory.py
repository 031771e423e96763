#!/usr/bin/env python3
"""Convert the cidgate inventory (queues.csv, numbers.csv; docs/behaviour.md §6) into
Kamailio htable tables in db_text format, for kamailio/kamailio.cfg.

Tables written into OUTDIR (one file each, plus db_text's `version` table):
  qregion  queue_id -> region          every known queue (unknown vs no-number)
  qnum     queue_id -> E.164 number    queues that have a caller-ID number
  qname    queue_id -> display name, already escaped for a SIP quoted-string
                       (without the surrounding quotes); only non-empty names
  qanon    queue_id -> 1               anonymous queues
  claimed  E.164    -> 1               claimed numbers

Numbers in national form are normalised with their region for the few
numbering plans this stdlib-only script knows (NANP countries, GB and a
handful of European plans); anything else must already be E.164.  Like
cidgate, a bad line refuses the whole load (exit 1, file:line: reason).

usage: kamailio_inventory.py QUEUES.csv NUMBERS.csv OUTDIR [--default-region US]
"""
import argparse
import csv
import os
import re
import sys

# country calling code and national trunk prefix per ISO region
PLANS = {
    "US": ("1", "1"), "CA": ("1", "1"), "PR": ("1", "1"),
    "GB": ("44", "0"), "IE": ("353", "0"), "DE": ("49", "0"), "FR": ("33", "0"),
    "ES": ("34", ""), "NL": ("31", "0"), "BE": ("32", "0"), "CH": ("41", "0"),
    "AT": ("43", "0"), "SE": ("46", "0"), "AU": ("61", "0"), "NZ": ("64", "0"),
}
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
SEPARATORS = re.compile(r"[\s().\-/]")


class BadLine(Exception):
    pass


def to_e164(raw, region):
    s = SEPARATORS.sub("", raw.strip())
    if s.startswith("00"):
        s = "+" + s[2:]
    if not s.startswith("+"):
        if region not in PLANS:
            raise BadLine(f"cannot normalise {raw!r}: unknown region {region!r}")
        cc, trunk = PLANS[region]
        if not s.isdigit():
            raise BadLine(f"not a phone number: {raw!r}")
        if cc == "1":
            if len(s) == 11 and s.startswith("1"):
                s = s[1:]
            if len(s) != 10:
                raise BadLine(f"not a 10-digit NANP number: {raw!r}")
        elif trunk and s.startswith(trunk):
            s = s[len(trunk):]
        s = "+" + cc + s
    if not E164.match(s):
        raise BadLine(f"not E.164: {raw!r}")
    if s.startswith("+1") and (s[2] in "01" or s[5] in "01" or len(s) != 12):
        raise BadLine(f"invalid NANP number: {raw!r}")
    return s


def quoted_string_body(name):
    """RFC 3261 quoted-string content: escape \\ and \", drop control characters."""
    out = []
    for ch in name:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            continue
        if ch in '\\"':
            out.append("\\")
        out.append(ch)
    return "".join(out)


def dbtext_escape(s):
    # db_text: ':' separates columns; backslash escapes ':', '\\', newline
    return s.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n")


def write_table(outdir, name, rows, value_type=0):
    path = os.path.join(outdir, name)
    with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
        f.write("id(int,auto) key_name(string) key_type(int) value_type(int) "
                "key_value(string) expires(int)\n")
        for i, (k, v) in enumerate(rows, 1):
            f.write(f"{i}:{dbtext_escape(k)}:0:{value_type}:{dbtext_escape(str(v))}:0\n")
    os.replace(path + ".tmp", path)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise SystemExit(f"{path}: empty file")
    return rows[0], rows[1:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("queues")
    ap.add_argument("numbers")
    ap.add_argument("outdir")
    ap.add_argument("--default-region", default="US")
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)

    claimed = {}
    head, rows = read_csv(a.numbers)
    if [h.strip() for h in head[:1]] != ["number"]:
        sys.exit(f"{a.numbers}:1: header must start with 'number'")
    for ln, r in enumerate(rows, 2):
        if not r or not "".join(r).strip():
            continue
        region = (r[1].strip() if len(r) > 1 else "") or a.default_region
        try:
            claimed[to_e164(r[0], region)] = 1
        except BadLine as e:
            sys.exit(f"{a.numbers}:{ln}: {e}")

    qregion, qnum, qname, qanon = [], [], [], []
    seen = set()
    head, rows = read_csv(a.queues)
    if [h.strip() for h in head[:4]] != ["queue_id", "caller_id_number", "caller_id_name", "region"]:
        sys.exit(f"{a.queues}:1: unexpected header {head}")
    for ln, r in enumerate(rows, 2):
        if not r or not "".join(r).strip():
            continue
        if len(r) < 4:
            sys.exit(f"{a.queues}:{ln}: expected at least 4 columns")
        qid, number, name, region = r[0].strip(), r[1].strip(), r[2], r[3].strip() or a.default_region
        anon = len(r) > 4 and r[4].strip().lower() in ("1", "true", "yes")
        if not qid:
            sys.exit(f"{a.queues}:{ln}: empty queue_id")
        if qid in seen:
            sys.exit(f"{a.queues}:{ln}: duplicate queue_id {qid!r}")
        seen.add(qid)
        qregion.append((qid, region))
        if number:
            try:
                e = to_e164(number, region)
            except BadLine as ex:
                sys.exit(f"{a.queues}:{ln}: {ex}")
            if e not in claimed:
                sys.exit(f"{a.queues}:{ln}: queue number {e} is not a claimed number")
            qnum.append((qid, e))
        body = quoted_string_body(name)
        if body:
            qname.append((qid, body))
        if anon:
            qanon.append((qid, 1))

    write_table(a.outdir, "qregion", qregion)
    write_table(a.outdir, "qnum", qnum)
    write_table(a.outdir, "qname", qname)
    write_table(a.outdir, "qanon", qanon, value_type=1)
    write_table(a.outdir, "claimed", sorted(claimed.items()), value_type=1)
    with open(os.path.join(a.outdir, "version"), "w") as f:
        f.write("table_name(string) table_version(int)\n")
        for t in ("qregion", "qnum", "qname", "qanon", "claimed"):
            f.write(f"{t}:2\n")
    print(f"kamailio inventory: {len(qregion)} queues ({len(qnum)} with number), "
          f"{len(claimed)} claimed numbers -> {a.outdir}")


if __name__ == "__main__":
    main()
