#!/usr/bin/env python3
"""Deterministic lab data for the cidgate load rig.

Writes into --out (default ./lab):
  queues.csv           queue_id,caller_id_number,caller_id_name,region,anonymous
  numbers.csv          number,region   (the claimed numbers; a few in national form)
  calls.csv            SIPp injection file for uac.xml, expectations for strict mode
  calls-normalize.csv  the same calls, expectations for dynamic_format = "normalize"
  cidgate.toml, cidgate-normalize.toml   configs pointing at the files above

Injection columns (see sipp-scenarios/uac.xml): queue; X-Caller-Id header line
or empty; accept|reject; expected number; |"expected name"| ; outcome label;
extra identity header or empty; second extra header or empty.

Numbers are valid for their country (libphonenumber): US geographic numbers
from long-established area codes, exchange 2-9XX but never N11 or 555; GB
London 20 3/7/8xxx xxxx and mobile 740-744/780-781/790 ranges.  Test ranges
that libphonenumber rejects (GB 07700 900xxx, US NPA 1xx) are only used as
deliberate "not E.164" inputs.  Same --seed, same files.
"""
import argparse
import os
import random

US_NPA = [int(x) for x in """
201 202 203 205 206 207 208 209 210 212 213 214 215 216 217 218 219 224 225 228
229 231 234 239 240 248 251 252 253 254 256 260 262 267 269 270 276 281 301 302
303 304 305 307 308 309 310 312 313 314 315 316 317 318 319 320 321 323 325 330
334 336 337 339 347 351 352 360 361 386 401 402 404 405 406 407 408 409 410 412
413 414 415 417 419 423 424 425 432 434 435 440 443 469 478 479 480 484 501 502
503 504 505 507 508 509 510 512 513 515 516 517 518 520 530 540 541 551 559 561
562 563 567 570 571 573 574 580 585 586 601 602 603 605 606 607 608 609 610 612
614 615 616 617 618 619 620 623 626 630 631 636 641 646 650 651 660 661 662 678
682 701 702 703 704 706 707 708 712 713 714 715 716 717 718 719 720 724 727 731
732 734 740 754 757 760 763 765 770 772 773 774 775 781 785 786 801 802 803 804
805 806 808 810 812 813 814 815 816 817 818 828 830 831 832 843 845 847 848 850
856 857 858 859 860 862 863 864 865 870 901 903 904 906 907 908 909 910 912 913
914 915 916 917 918 919 920 925 928 931 936 937 940 941 947 949 952 954 956 970
971 972 973 978 979 980 985 989""".split()]
GB_PREFIXES = ["203", "207", "208", "7400", "7401", "7402", "7403", "7404", "7410",
               "7420", "7430", "7440", "7800", "7801", "7810", "7900", "7901"]

DEPTS = ["Sales", "Support", "Billing", "Collections", "Retention", "Claims",
         "Renewals", "Onboarding", "Dispatch", "Escalations", "Appointments", "Care"]
CITIES_US = ["Boston", "Denver", "Austin", "Seattle", "Miami", "Chicago", "Phoenix", "Atlanta"]
CITIES_GB = ["London", "Leeds", "Bristol", "Glasgow", "Cardiff", "Belfast"]
ODD_NAMES = ['Sales "East" Team', 'Ops \\ Night', 'Q&A "Tier \\2\\"', 'Café Zürich',
             'Support – Québec', "O'Brien Desk"]
GARBAGE = ["garbage-xyz", "anonymous", "12345", "+1234", "+99912345678", "+1 (abc) def",
           "+11235550100", "+447700900123", "tel:+14155550100", "#!"]

# outcome mix in percent, in this order; reject classes last
MIX = [("queue", 40), ("dynamic", 30), ("fallback_not_e164", 10),
       ("fallback_unclaimed", 10), ("unknown_queue", 5), ("no_queue_number", 5)]


def us_number(rng):
    npa = rng.choice(US_NPA)
    while True:
        nxx = rng.randint(200, 999)
        if nxx % 100 != 11 and nxx != 555:
            break
    return "+1%d%d%04d" % (npa, nxx, rng.randint(0, 9999))


def gb_number(rng):
    p = rng.choice(GB_PREFIXES)
    return "+44" + p + "".join(str(rng.randint(0, 9)) for _ in range(10 - len(p)))


def national(e164):
    """National dialling form of a number this generator made."""
    if e164.startswith("+1"):
        d = e164[2:]
        return "(%s) %s-%s" % (d[:3], d[3:6], d[6:])
    d = "0" + e164[3:]
    if d.startswith("02"):
        return "%s %s %s" % (d[:3], d[3:7], d[7:])
    return "%s %s" % (d[:5], d[5:])


def spaced_international(e164):
    if e164.startswith("+1"):
        d = e164[2:]
        return "+1 %s %s %s" % (d[:3], d[3:6], d[6:])
    return "+44 " + e164[3:5] + " " + e164[5:9] + " " + e164[9:]


def quoted(name):
    body = "".join(("\\" + c if c in '\\"' else c) for c in name if ord(c) >= 0x20 and ord(c) != 0x7F)
    return '|"%s"|' % body if body else "||"


def csv_field(s):
    if any(c in s for c in ',"\r\n') or s != s.strip():
        return '"' + s.replace('"', '""') + '"'
    return s


def main():
    ap = argparse.ArgumentParser(description="deterministic cidgate lab data")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--queues", type=int, default=10000)
    ap.add_argument("--numbers", type=int, default=100000, help="claimed numbers")
    ap.add_argument("--calls", type=int, default=50000)
    ap.add_argument("--out", default="lab")
    ap.add_argument("--domain", default="gw.example.net")
    ap.add_argument("--carrier", default="sip:127.0.0.1:5080;transport=udp")
    ap.add_argument("--listen-port", type=int, default=5060)
    a = ap.parse_args()
    if a.numbers < a.queues:
        ap.error("--numbers must be >= --queues (every queue number is claimed)")
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)

    # claimed numbers, 75 % US / 25 % GB, all distinct
    claimed, seen = [], set()
    while len(claimed) < a.numbers:
        n = us_number(rng) if rng.random() < 0.75 else gb_number(rng)
        if n not in seen:
            seen.add(n)
            claimed.append(n)
    with open(os.path.join(a.out, "numbers.csv"), "w", encoding="utf-8", newline="") as f:
        f.write("number,region\n")
        for i, n in enumerate(claimed):
            region = "US" if n.startswith("+1") else "GB"
            # every 20th number written in national form: the loader must normalise it
            f.write("%s,%s\n" % (csv_field(national(n)) if i % 20 == 7 else n, region))

    # queues: 5 % without number, 5 % without name, a few odd names
    queues = []  # (qid, number or None, name, region)
    for i in range(a.queues):
        qid = "q%05d" % i
        number = claimed[i] if rng.random() >= 0.05 else None
        if number:
            region = "US" if number.startswith("+1") else "GB"
        else:
            region = "US" if rng.random() < 0.75 else "GB"
        r = rng.random()
        if r < 0.05:
            name = ""
        elif r < 0.07:
            name = rng.choice(ODD_NAMES)
        else:
            name = "%s %s" % (rng.choice(DEPTS), rng.choice(CITIES_US if region == "US" else CITIES_GB))
        queues.append((qid, number, name, region))
    with open(os.path.join(a.out, "queues.csv"), "w", encoding="utf-8", newline="") as f:
        f.write("queue_id,caller_id_number,caller_id_name,region,anonymous\n")
        for qid, number, name, region in queues:
            f.write("%s,%s,%s,%s,false\n" % (qid, number or "", csv_field(name), region))

    with_num = [q for q in queues if q[1]]
    without_num = [q for q in queues if not q[1]] or [("nonum-fallback", None, "", "US")]
    by_region = {"US": [n for n in claimed if n.startswith("+1")],
                 "GB": [n for n in claimed if n.startswith("+44")]}

    def unclaimed(region):
        while True:
            n = us_number(rng) if region == "US" else gb_number(rng)
            if n not in seen:
                return n

    extras = ['P-Asserted-Identity: "Agent 7" <sip:agent7@pbx.example.com>',
              "P-Preferred-Identity: <sip:agent7@pbx.example.com>",
              "Remote-Party-ID: <sip:agent7@pbx.example.com>",
              "P-Asserted-Identity: <tel:+19995550000>"]
    weights = [w for _, w in MIX]
    classes = [c for c, _ in MIX]
    counts = {c: 0 for c in classes}
    strict_rows, norm_rows = [], []
    for i in range(a.calls):
        outcome = rng.choices(classes, weights)[0]
        counts[outcome] += 1
        x1 = rng.choice(extras) if rng.random() < 0.10 else ""
        x2 = rng.choice(extras) if x1 and rng.random() < 0.3 else ""
        if outcome in ("unknown_queue", "no_queue_number"):
            qid = "q-unknown-%d" % rng.randint(0, 999) if outcome == "unknown_queue" else rng.choice(without_num)[0]
            cid = "X-Caller-Id: " + rng.choice(claimed) if rng.random() < 0.3 else ""
            row = [qid, cid, "reject", "", "||", outcome, x1, x2]
            strict_rows.append(row)
            norm_rows.append(row)
            continue
        qid, qnum, name, region = rng.choice(with_num)
        nm = quoted(name)
        if outcome == "queue":
            row = [qid, "", "accept", qnum, nm, "queue", x1, x2]
            strict_rows.append(row)
            norm_rows.append(row)
        elif outcome == "dynamic":
            n = rng.choice(by_region[region] or claimed)
            strict_rows.append([qid, "X-Caller-Id: " + n, "accept", n, nm, "dynamic", x1, x2])
            norm_rows.append(strict_rows[-1])
        elif outcome == "fallback_unclaimed":
            n = unclaimed(region)
            strict_rows.append([qid, "X-Caller-Id: " + n, "accept", qnum, nm, "fallback_unclaimed", x1, x2])
            norm_rows.append(strict_rows[-1])
        else:  # fallback_not_e164 in strict mode
            kind = rng.random()
            if kind < 0.5:
                # garbage in both modes
                g = rng.choice(GARBAGE)
                strict_rows.append([qid, "X-Caller-Id: " + g, "accept", qnum, nm, "fallback_not_e164", x1, x2])
                norm_rows.append(strict_rows[-1])
            else:
                # a claimed number in national / spaced form: strict falls back,
                # normalize mode (queue's region) turns it into a dynamic call
                n = rng.choice(by_region[region] or claimed)
                if (region == "US") != n.startswith("+1"):
                    n = rng.choice(by_region[region])
                form = national(n) if kind < 0.8 else spaced_international(n)
                strict_rows.append([qid, "X-Caller-Id: " + form, "accept", qnum, nm, "fallback_not_e164", x1, x2])
                norm_rows.append([qid, "X-Caller-Id: " + form, "accept", n, nm, "dynamic", x1, x2])

    for fname, rows in (("calls.csv", strict_rows), ("calls-normalize.csv", norm_rows)):
        with open(os.path.join(a.out, fname), "w", encoding="utf-8", newline="") as f:
            f.write("SEQUENTIAL\n")
            for r in rows:
                assert not any(";" in c for c in r), r
                f.write(";".join(r) + "\n")

    absout = os.path.abspath(a.out)
    for fname, mode in (("cidgate.toml", "strict"), ("cidgate-normalize.toml", "normalize")):
        with open(os.path.join(a.out, fname), "w") as f:
            f.write(f"""# generated by scripts/gen_lab.py --seed {a.seed}
[server]
listen = ["udp://127.0.0.1:{a.listen_port}", "tcp://127.0.0.1:{a.listen_port}"]
domain = "{a.domain}"
admin  = "127.0.0.1:8080"

[trust]
pbx = ["127.0.0.1/32"]

[[carrier]]
uri = "{a.carrier}"

[health]
# The SIPp carrier scenario expects INVITEs only: no OPTIONS probes.
probe_interval = 0

[callerid]
queue_header   = "X-Queue-Id"
dynamic_header = "X-Caller-Id"
dynamic_format = "{mode}"
default_region = "US"
pai            = "sip"
strip          = ["X-Queue-Id", "X-Caller-Id", "P-Preferred-Identity", "Remote-Party-ID"]

[reject]
code   = 403
reason = 'Q.850;cause=21;text="no outbound caller ID"'

[inventory]
queues  = "{absout}/queues.csv"
numbers = "{absout}/numbers.csv"
""")
    print("gen_lab: seed %d: %d queues (%d without number), %d claimed numbers, %d calls: %s -> %s"
          % (a.seed, len(queues), len(queues) - len(with_num), len(claimed), a.calls,
             " ".join("%s=%d" % kv for kv in counts.items()), a.out))


if __name__ == "__main__":
    main()
