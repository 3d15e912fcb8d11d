"""Generates the demo's claims: a JSON input per claim and its scanned claim form (a PNG).

The scans are rendered from text with Pillow and then degraded like a cheap office scan: a slight
rotation, blur, speckle noise and a few stray lines, so that Tesseract has real work to do. Fixed seed:
the same claims every time.

    python make_claims.py OUT_DIR [COUNT [REVIEW_SECONDS]]   # writes OUT_DIR/claims/C-xxxx.json and OUT_DIR/scans/C-xxxx.png
"""
import json
import os
import random
import sys

from PIL import Image, ImageDraw, ImageFilter, ImageFont

NARRATIVES = {
    "vehicle": [
        "Rear-end collision at a traffic light on the ring road. Bumper and tail light replaced at the garage.",
        "Stone chip cracked the windscreen on the motorway. Windscreen replaced by an authorised repairer.",
    ],
    "medical": [
        "Emergency treatment at the city hospital after a fall while hiking. Invoice from the clinic attached.",
        "Dental surgery and follow-up visits after an accident. Itemised invoice from the practice.",
    ],
    "property": [
        "Burst pipe in the kitchen flooded the floor. Plumber repaired the pipe and the flooring was replaced.",
        "Storm damaged the roof tiles and the gutter. Roofer invoice for repairs attached.",
    ],
    "travel": [
        "Trip cancelled because of illness confirmed by a doctor. Airline and hotel refused a refund.",
        "Luggage delayed for four days on a business trip. Essential clothing and toiletries purchased.",
    ],
}
# Texts written like the fraud patterns the embedding worker knows (known_patterns in embed_worker.py).
SUSPICIOUS = [
    "All receipts were lost in the fire, payment was made in cash only. Please transfer urgently to the new account below.",
    "Expensive jewellery and electronics stolen from the car, no police report filed, bought in cash the week before.",
    "Vehicle destroyed by fire in a remote place at night, no witnesses, policy taken out last month.",
]
ITEMS = {
    "vehicle": [("Bumper replacement", 640), ("Tail light unit", 210), ("Windscreen", 480), ("Labour 4h", 320)],
    "medical": [("Emergency room", 850), ("X-ray", 240), ("Dental surgery", 1300), ("Follow-up visit", 120)],
    "property": [("Pipe repair", 380), ("Flooring 18 m2", 1900), ("Roof tiles", 760), ("Gutter", 290)],
    "travel": [("Flight ticket", 690), ("Hotel 3 nights", 420), ("Clothing", 260), ("Toiletries", 45)],
}
NAMES = ["Ana Weber", "Luis Moreno", "Jan Novak", "Mei Chen", "Olga Ivanova", "Tom Berger", "Sara Lind",
         "Ravi Patel", "Nora Keller", "Paul Martin"]


def render(lines, path, rng):
    font = ImageFont.load_default(size=24)
    width, height = 1240, 90 + 38 * len(lines)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((60, 40 + row * 38), line, fill=rng.randint(0, 50), font=font)
    for _ in range(3):  # stray scanner lines
        y = rng.randint(0, height - 1)
        draw.line([(0, y), (width, y + rng.randint(-3, 3))], fill=rng.randint(170, 215), width=1)
    image = image.rotate(rng.uniform(-0.8, 0.8), resample=Image.BICUBIC, fillcolor=255, expand=False)
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    pixels = image.load()
    for _ in range(width * height // 120):  # speckles
        x, y = rng.randrange(width), rng.randrange(height)
        pixels[x, y] = rng.choice((0, 90, 255))
    image.save(path)


def make(out, count, review_seconds=None, seed=20261205):
    rng = random.Random(seed)
    os.makedirs(os.path.join(out, "claims"), exist_ok=True)
    os.makedirs(os.path.join(out, "scans"), exist_ok=True)
    categories = sorted(NARRATIVES)
    claims = []
    for index in range(count):
        claim_id = f"C-{1001 + index}"
        category = categories[index % len(categories)]
        suspicious = index % 5 == 3                     # every fifth claim reads like a known fraud pattern;
        established = suspicious and index % 10 == 8    # half of those from customers with some history
        inflated = index % 7 == 5                       # the claimed total exceeds the total on the scan
        items = rng.sample(ITEMS[category], k=rng.randint(2, 3))
        items = [(name, round(price * rng.uniform(0.8, 1.3), 2)) for name, price in items]
        if suspicious:
            items = [(name, round(price * (1.6 if established else 3.5), 2)) for name, price in items]
        scanned_total = round(sum(price for _, price in items), 2)
        claimed = [{"description": name, "amount": price} for name, price in items]
        if inflated:
            claimed[0]["amount"] = round(claimed[0]["amount"] + 140, 2)
        narrative = rng.choice(SUSPICIOUS if suspicious else NARRATIVES[category])
        customer = NAMES[index % len(NAMES)]
        lines = ["NORTHWIND MUTUAL INSURANCE - CLAIM FORM", f"Claim number: {claim_id}",
                 f"Policy: P-{20000 + index * 37}   Claimant: {customer}", "Description of loss:"]
        words, line = narrative.split(), ""
        for word in words:
            if len(line) + len(word) > 70:
                lines.append("  " + line)
                line = ""
            line += word + " "
        lines.append("  " + line.strip())
        lines.append("Items:")
        for name, price in items:
            lines.append(f"  {name:<32} EUR {price:>9.2f}")
        lines.append(f"TOTAL EUR {scanned_total:.2f}")
        scan = os.path.abspath(os.path.join(out, "scans", f"{claim_id}.png"))
        render(lines, scan, rng)
        claim = {
            "claimId": claim_id, "policyId": f"P-{20000 + index * 37}", "customer": customer,
            "policyAgeDays": rng.randint(120, 300) if established else rng.randint(3, 25) if suspicious else rng.randint(60, 2000),
            "priorClaims": 1 if established else rng.randint(2, 4) if suspicious else rng.choice((0, 0, 0, 1)),
            "scan": scan, "items": claimed,
            # A payee account the simulated bank refuses (compensation demo): every eleventh claim.
            "payeeIBAN": ("XX00 CLOSED " if index % 11 == 7 else "DE89 3704 0044 ") + f"{index:04d}",
        }
        if review_seconds is not None:
            claim["reviewSeconds"] = review_seconds
        with open(os.path.join(out, "claims", f"{claim_id}.json"), "w") as handle:
            json.dump(claim, handle)
        claims.append(claim)
    return claims


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: make_claims.py OUT_DIR [COUNT [REVIEW_SECONDS]]")
    made = make(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 24,
                float(sys.argv[3]) if len(sys.argv) > 3 else None)
    print(f"{len(made)} claims and scans in {sys.argv[1]}")
