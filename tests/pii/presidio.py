"""Runs Microsoft Presidio's pattern recognizers (presidio-analyzer, no NLP model) over
tests/pii/labelled.jsonl and prints precision and recall per kind, counted as
src/pii/tests.rs counts them for the router's detectors: a labelled value is found when a
finding of its kind overlaps it; any other finding is a false positive.

    bash scripts/pii-data.sh presidio

Presidio's entities map to the router's kinds: EMAIL_ADDRESS, PHONE_NUMBER (phonenumbers'
matcher, for the regions of the set's locales), CREDIT_CARD, IBAN_CODE, IP_ADDRESS (ipv4 or
ipv6 by its shape) and US_SSN. It has no recognizer for Chinese resident IDs. Findings below
`--threshold` (default 0.5; Presidio scores weak patterns lower, e.g. a bare SSN shape) are left
out; `--threshold 0` counts everything it returns.
"""

import argparse
import json
import os

from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["email", "phone", "card", "iban", "ipv4", "ipv6", "us_ssn", "cn_resident_id"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    recognizers = [
        EmailRecognizer(),
        PhoneRecognizer(supported_regions=("US", "GB", "DE", "FR", "IT", "NL", "ES", "CN")),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
    ]
    names = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CREDIT_CARD": "card", "IBAN_CODE": "iban",
             "US_SSN": "us_ssn"}
    counts = {k: [0, 0, 0] for k in KINDS}
    negatives = flagged = 0
    for raw in open(os.path.join(HERE, "labelled.jsonl"), encoding="utf-8"):
        line = json.loads(raw)
        text = line["text"]
        found = []
        for r in recognizers:
            for res in r.analyze(text, r.supported_entities, None):
                if res.score < args.threshold:
                    continue
                value = text[res.start:res.end]
                kind = names.get(res.entity_type) or ("ipv6" if ":" in value else "ipv4")
                start = len(text[:res.start].encode("utf-8"))
                found.append((kind, start, start + len(value.encode("utf-8"))))
        for span in line["spans"]:
            hit = any(k == span["kind"] and s < span["end"] and span["start"] < e for k, s, e in found)
            counts[span["kind"]][0 if hit else 2] += 1
        for k, s, e in found:
            if not any(sp["kind"] == k and s < sp["end"] and sp["start"] < e for sp in line["spans"]):
                counts[k][1] += 1
        if not line["spans"]:
            negatives += 1
            flagged += bool(found)
    print(f"Presidio's pattern recognizers, score threshold {args.threshold}:")
    print("| kind | precision | recall | found | false positives | missed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for k in KINDS:
        tp, fp, fn = counts[k]
        if k == "cn_resident_id":
            print(f"| {k} | - | 0.000 (no recognizer) | 0 | 0 | {fn} |")
            continue
        print(f"| {k} | {tp / max(tp + fp, 1):.3f} | {tp / max(tp + fn, 1):.3f} | {tp} | {fp} | {fn} |")
    print(f"\nhard negatives with any finding: {flagged} of {negatives}")


if __name__ == "__main__":
    main()
