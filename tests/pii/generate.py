"""Writes tests/pii/labelled.jsonl: texts with personal values whose places and kinds are
known, and hard negatives (order numbers, versions, timestamps, code, hashes, prices…) that
hold none, for measuring the PII detectors' precision and recall per kind
(`cargo test -p edge-router --test pii_eval`, or `edge_router::pii`'s figures in docs/pii.md).

The values come from Faker across eight locales, so phone numbers, IBANs and addresses are
written the way each country writes them; the sentences around them are templates, some in the
locale's language. Seeded: a rerun writes the same file. Run it with
scripts/pii-data.sh (which installs the pinned Faker into .tools/pii-venv).

Each line: {"text": …, "locale": …, "spans": [{"start": b, "end": b, "kind": k}, …]} with byte
offsets into the UTF-8 text; a text with no spans is a negative.
"""

import datetime
import json
import os
import random

from faker import Faker

HERE = os.path.dirname(os.path.abspath(__file__))
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "nl_NL", "es_ES", "zh_CN"]
PER_KIND = 250
NEGATIVES = 1500

# Sentences with a slot for one value, by kind; {v} is the value.
TEMPLATES = {
    "email": [
        "Please send the report to {v} by Friday.",
        "My email is {v}, reply there.",
        "Contact: {v}",
        "Schreiben Sie an {v}, bitte.",
        "请发邮件到{v}，谢谢。",
        "cc {v} on the thread",
    ],
    "phone": [
        "Call me at {v} after 6pm.",
        "Phone: {v}",
        "You can reach the front desk on {v}.",
        "Rufen Sie mich unter {v} an.",
        "Mon numéro est le {v}.",
        "我的电话是{v}。",
        "tel {v} (mobile)",
    ],
    "card": [
        "Charge it to my card {v}, expiry 09/27.",
        "card number: {v}",
        "The customer paid with {v} yesterday.",
        "Please refund {v}.",
    ],
    "iban": [
        "Wire the money to IBAN {v}.",
        "Bankverbindung: {v}",
        "Our account is {v}, reference INV-2291.",
        "IBAN: {v}",
    ],
    "ipv4": [
        "The request came from {v} at noon.",
        "ssh admin@{v} and restart nginx",
        "Blocked IP: {v}",
        "server={v}:8080",
    ],
    "ipv6": [
        "The client connected from {v}.",
        "Allow {v} in the firewall.",
        "addr: {v}",
    ],
    "us_ssn": [
        "My SSN is {v}.",
        "Social security number {v}, date of birth 03/14/1980.",
        "SSN: {v}",
    ],
    "cn_resident_id": [
        "身份证号码：{v}",
        "我的身份证是{v}，请核对。",
        "ID card {v}",
    ],
}

# Faker's dates are drawn up to "now" unless bounded: bounded, a rerun writes the same file.
SINCE = datetime.datetime(2000, 1, 1)
UNTIL = datetime.datetime(2025, 1, 1)


# Texts with nothing personal in them that look like something that is.
def negatives(rng, fake):
    when = lambda: fake.date_time_between(start_date=SINCE, end_date=UNTIL)
    makers = [
        lambda: f"Order #{rng.randint(10**7, 10**12)} has shipped.",
        lambda: f"Invoice INV-{rng.randint(2019, 2026)}-{rng.randint(1, 99999):05d} is due.",
        lambda: f"Upgrade to v{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)} before Monday.",
        lambda: f"Requires Python {rng.randint(2, 3)}.{rng.randint(0, 13)}.{rng.randint(0, 20)} or later.",
        lambda: f"The job ran at {when().isoformat(sep=' ')} and took {rng.randint(1, 99)} s.",
        lambda: f"Meeting at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} UTC.",
        lambda: f"Logged {when().isoformat()} level=info msg=started",
        lambda: f"for (int i = 0; i < {rng.randint(2, 999)}; i++) {{ total += a[i]; }}",
        lambda: "std::vector<int> v; v.push_back(3); std::cout << v.size();",
        lambda: f"let x: u64 = {rng.randint(10**9, 10**15)}; // nanoseconds",
        lambda: f"request id {fake.uuid4()}",
        lambda: f"commit {fake.sha1()}",
        lambda: f"sha256: {fake.sha256()}",
        lambda: f"It costs ${rng.randint(1, 9)},{rng.randint(100, 999)}.{rng.randint(0, 99):02d} including tax.",
        lambda: f"Price: {rng.randint(1, 9)} {rng.randint(100, 999)},{rng.randint(0, 99):02d} €",
        lambda: f"Delivered on {when().date().isoformat()} to the warehouse.",
        lambda: f"ISBN 978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(0, 9)}",
        lambda: f"Tracking: 1Z{rng.randint(10**15, 10**16 - 1)}",
        lambda: f"Coordinates {rng.uniform(-90, 90):.4f}, {rng.uniform(-180, 180):.4f}",
        lambda: f"Growth was {rng.uniform(0, 40):.1f}% in Q{rng.randint(1, 4)}.",
        lambda: f"Part number {rng.randint(1000, 9999)} {rng.randint(1000, 9999)} is out of stock.",
        lambda: f"Account balance: {rng.randint(10**5, 10**9)} points",
        lambda: f"{rng.randint(10**15, 10**16 - 1)} is not a valid card number.",
        lambda: f"Build {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(1000, 9999)} passed.",
        lambda: f"Room {rng.randint(100, 999)}, floor {rng.randint(1, 40)}, badge {rng.randint(100000, 999999)}",
        lambda: f"The answer is {rng.randint(10**9, 10**10)} (ten digits).",
        lambda: fake.paragraph(nb_sentences=3),
        lambda: f"{fake.company()} was founded in {rng.randint(1900, 2020)} by {fake.name()}.",
    ]
    return rng.choice(makers)()


# SWIFT's IBAN registry: each country's IBAN length (the countries Faker's locales use).
IBAN_LENGTHS = {"GB": 22, "DE": 22, "FR": 27, "IT": 27, "NL": 18, "ES": 24, "BE": 16, "AT": 20, "CH": 21}


def value(kind, fake, rng):
    if kind == "email":
        return fake.email()
    if kind == "phone":
        return fake.phone_number()
    if kind == "card":
        return fake.credit_card_number()
    if kind == "iban":
        # No bank takes an IBAN of a length its country does not use; Faker's zh_CN writes GB
        # ones of 21 characters for 22 (China has no IBANs), so that locale is not asked.
        v = fake.iban()
        if IBAN_LENGTHS.get(v[:2]) != len(v):
            raise ValueError(f"Faker wrote an IBAN of the wrong length: {v}")
        # Written in groups of four half the time, as on paper.
        return " ".join(v[i:i + 4] for i in range(0, len(v), 4)) if rng.random() < 0.5 else v
    if kind == "ipv4":
        return fake.ipv4()
    if kind == "ipv6":
        return fake.ipv6()
    if kind == "us_ssn":
        return fake.ssn()
    if kind == "cn_resident_id":
        return fake.ssn()
    raise ValueError(kind)


def locales_for(kind):
    if kind == "us_ssn":
        return ["en_US"]
    if kind == "cn_resident_id":
        return ["zh_CN"]
    if kind == "iban":
        return [loc for loc in LOCALES if loc != "zh_CN"]
    return LOCALES


def byte_span(text, start, end):
    return len(text[:start].encode("utf-8")), len(text[:end].encode("utf-8"))


def main():
    rng = random.Random(20261206)
    fakers = {}
    for loc in LOCALES:
        f = Faker(loc)
        f.seed_instance(rng.randint(0, 2**31))
        fakers[loc] = f
    lines = []
    for kind, templates in TEMPLATES.items():
        for n in range(PER_KIND):
            loc = rng.choice(locales_for(kind))
            fake = fakers[loc]
            v = value(kind, fake, rng)
            template = rng.choice(templates)
            text = template.replace("{v}", v)
            at = template.index("{v}")
            spans = [dict(zip(("start", "end"), byte_span(text, at, at + len(v))), kind=kind)]
            # A third of the texts carry a second value of another kind after the first.
            if n % 3 == 0:
                other = rng.choice([k for k in TEMPLATES if k != kind])
                oloc = rng.choice(locales_for(other))
                ov = value(other, fakers[oloc], rng)
                sentence = rng.choice(TEMPLATES[other])
                prefix = text + " "
                text = prefix + sentence.replace("{v}", ov)
                oat = len(prefix) + sentence.index("{v}")
                spans.append(dict(zip(("start", "end"), byte_span(text, oat, oat + len(ov))), kind=other))
            lines.append({"text": text, "locale": loc, "spans": spans})
    for _ in range(NEGATIVES):
        loc = rng.choice(LOCALES)
        lines.append({"text": negatives(rng, fakers[loc]), "locale": loc, "spans": []})
    rng.shuffle(lines)
    with open(os.path.join(HERE, "labelled.jsonl"), "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"wrote {len(lines)} texts: {PER_KIND} per kind of {len(TEMPLATES)}, about a third with a second value, "
          f"and {NEGATIVES} negatives")


if __name__ == "__main__":
    main()
