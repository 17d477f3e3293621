"""Text material for `generate.py`: word pools, a tiny template grammar, and builders of the
prompts and responses each feature of the demo app sends and receives.

Everything here is a pure function of a `random.Random`, so the generator stays deterministic.
The prose need not be good; it must *look* like real application traffic (tickets, invoices,
e-mails, diffs, maths, reports) so tokenisation, difficulty cues and redaction behave realistically.
"""

from __future__ import annotations

import difflib
import json
import random
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

Rng = random.Random
Pool = list[str] | Callable[[Rng], str]


def _pool(items: str) -> list[str]:
    return items.split("|")


G: dict[str, Pool] = {
    "first": _pool(
        "Maria|James|Wei|Aisha|Lukas|Sofia|Daniel|Priya|Omar|Elena|Tomasz|Hannah|Kenji|Chloe|"
        "Mateo|Fatima|Jonas|Grace|Ravi|Ingrid|Samuel|Yuki|Noah|Leila|Pierre|Amara|Felix|Nadia"
    ),
    "last": _pool(
        "Lopez|Smith|Chen|Khan|Schmidt|Rossi|Okafor|Patel|Haddad|Novak|Kowalski|Becker|Tanaka|"
        "Martin|Garcia|Berg|Wilson|Iyer|Larsen|Mensah|Sato|Brown|Moreau|Fischer|Silva|Nguyen"
    ),
    "product": _pool(
        "ThermoSmart 300 thermostat|AirPure H13 air purifier|BrewMaster Pro espresso machine|"
        "RoboVac S7 robot vacuum|AquaClear water filter|SoundBar 5.1 speaker|SmartLock Z2|"
        "FreshKeep 450 fridge|LumiDesk LED lamp|PowerCell 20K power bank"
    ),
    "vendor": _pool(
        "Northwind Traders Ltd|Contoso Cloud GmbH|Globex Logistics BV|Initech Office Supply|"
        "Umbrella Facilities Services|Stark Print & Media|Wayne Hosting Ltd|Hooli Analytics Inc|"
        "Vandelay Imports|Soylent Catering Co"
    ),
    "carrier": _pool("DHL|UPS|FedEx|PostNL|DPD|Royal Mail"),
    "city": _pool("Rotterdam|Leeds|Lyon|Hamburg|Denver|Austin|Milan|Porto|Krakow|Dublin|Toronto"),
    "country": _pool("Norway|Switzerland|Canada|Ireland|Poland|Australia"),
    "street": lambda r: f"{r.randint(1, 240)} {{street_name}}",
    "street_name": _pool("Market Street|Kingsway|Hauptstrasse|Oak Avenue|Harbour Road|Elm Street"),
    "order_id": lambda r: f"AC-{r.randint(1_000_000, 9_999_999)}",
    "date": lambda r: f"2026-{r.randint(8, 10):02d}-{r.randint(1, 28):02d}",
    "amount": lambda r: f"{r.randint(9, 899)}.{r.randint(0, 99):02d}",
    "n": lambda r: str(r.randint(2, 14)),
    "pct": lambda r: str(r.randint(2, 38)),
    "ref": lambda r: f"CLM-{r.randint(10000, 99999)}",
    "time": _pool("9:30|10am|11:15|1pm|2:30pm|3pm|4:45pm"),
    "weekday": _pool("Monday|Tuesday|Wednesday|Thursday|Friday"),
    "team": _pool("Payments|Search|Mobile|Platform|Growth|Data|Checkout"),
    "metric": _pool("conversion|p95 latency|churn|NPS|error rate|AOV|MRR"),
    "err": _pool(
        "ERR_SESSION_EXPIRED|Error 403: Forbidden|Invalid verification code|"
        "Payment declined: do_not_honor|Device offline (E-214)|Something went wrong (0x5)"
    ),
    # code-review identifiers
    "verb": _pool("load|parse|sync|apply|merge|refresh|export|reconcile"),
    "noun": _pool("invoice|order|payment|shipment|cart|refund|webhook|coupon"),
    "cls": _pool("Invoice|Order|Payment|Shipment|LedgerEntry|Refund|Account"),
    "status": _pool("pending|settled|failed|open|archived"),
}

_SLOT = re.compile(r"\{([a-z_]+)\d?\}")


def expand(r: Rng, text: str, ctx: dict[str, str] | None = None) -> str:
    """Fill `{slot}` placeholders: bound names from `ctx`, else a fresh draw from the pool `G`.

    `{slot2}` draws from the same pool as `{slot}` but is a separate binding. Unknown names are
    left alone, so code and JSON braces pass through untouched.
    """
    ctx = ctx or {}

    def sub(m: re.Match[str]) -> str:
        key = m.group(0)[1:-1]
        if key in ctx:
            return ctx[key]
        pool = G.get(m.group(1))
        if pool is None:
            return m.group(0)
        return expand(r, pool(r) if callable(pool) else r.choice(pool), ctx)

    return _SLOT.sub(sub, text)


def bind(r: Rng, *templates: str) -> dict[str, str]:
    """Draw one value per slot appearing in `templates`, so paired texts (draft/polished) agree."""
    ctx: dict[str, str] = {}
    for t in templates:
        for m in _SLOT.finditer(t):
            key = m.group(0)[1:-1]
            if key not in ctx and m.group(1) in G:
                ctx[key] = expand(r, "{" + m.group(1) + "}")
    return ctx


def prose(r: Rng, pool: list[str], k: int, ctx: dict[str, str] | None = None) -> str:
    return " ".join(expand(r, t, ctx) for t in r.sample(pool, min(k, len(pool))))


def person(r: Rng) -> str:
    return expand(r, "{first} {last}")


# --- support-chat -------------------------------------------------------------------------------
# topic -> (customer openers, agent reply sentences); FAQ topics are the "easy" conversations.
SUPPORT: dict[str, tuple[list[str], list[str]]] = {
    "late": (
        [
            "Hi, my order {order_id} still hasn't arrived. Tracking says it left the {carrier} "
            "depot in {city} on {date} and nothing since. Can you check what's going on?",
            "Where is my package? Order {order_id}, it was supposed to arrive last {weekday}.",
        ],
        [
            "I can see the parcel was handed to {carrier} on {date}; it is marked as delayed at "
            "the {city} sorting centre.",
            "I've opened a trace request with {carrier} (reference {ref}). They usually answer "
            "within 2 business days.",
            "If it hasn't moved by {weekday}, I'll send a replacement at no cost.",
        ],
    ),
    "refund": (
        [
            "Hello, I was charged twice for order {order_id} (${amount} each). Please refund the "
            "duplicate charge.",
            "I returned the {product} on {date} but haven't received my refund of ${amount} yet.",
        ],
        [
            "I've issued a refund of ${amount} to your original payment method; it typically "
            "appears within 5-7 business days.",
            "The return was scanned at our warehouse on {date}, so the refund is already approved.",
            "Your bank may show the duplicate as pending; it will drop off automatically.",
        ],
    ),
    "damaged": (
        [
            "The {product} I received yesterday is damaged: the front panel is cracked. Order "
            "{order_id}. What are my options?",
            "My {product} stopped working after {n} months. Is it still under warranty?",
        ],
        [
            "Your {product} is covered by our 24-month warranty, so we can offer a free repair or "
            "a replacement.",
            "Could you send a photo of the damage and the serial number from the label underneath?",
            "I've created return label {ref}; drop the parcel at any {carrier} point.",
        ],
    ),
    "login": (
        [
            "I can't log in to my account. I reset my password twice but I keep getting '{err}'.",
            "The app keeps saying my {product} is offline even though it's connected to Wi-Fi. "
            "I already restarted the router.",
        ],
        [
            "To reset the device, hold the power button for 10 seconds until the LED blinks "
            "amber, then re-add it in the Acme Home app.",
            "I've cleared the lock on your account; please sign in again within 15 minutes.",
            "That error usually means the app is outdated; version 6.4 fixes it.",
        ],
    ),
    "faq": (
        [
            "Do you ship to {country}? And how long does delivery usually take?",
            "What are your customer service hours?",
            "How do I change the e-mail address on my account?",
        ],
        [
            "Yes, we ship to {country}; standard delivery takes 3-5 business days.",
            "Our team is available Monday to Saturday, 8:00-20:00 CET.",
            "Go to Settings > Account > E-mail, enter the new address and confirm the link.",
        ],
    ),
}
FOLLOW_UPS = [
    "Thanks. How long will that take?",
    "I already tried that, it didn't help. I get '{err}' again.",
    "Ok, the order number is {order_id}.",
    "Can you escalate this to a manager? This is the third time I'm contacting you.",
    "Great, can you also e-mail me a copy of the invoice?",
    "Is there any way to speed this up? I need it before {date}.",
]
OPENERS = [
    "I'm sorry to hear about the trouble.",
    "Thanks for reaching out, and apologies for the inconvenience.",
    "Thanks for the details, I've pulled up your account.",
]
CLOSERS = [
    "Is there anything else I can help you with?",
    "Let me know if the issue persists and I'll escalate it right away.",
    "You'll get an e-mail update as soon as anything changes.",
]


def support_turns(r: Rng, topic: str, turns: int) -> list[tuple[str, str]]:
    """An alternating user/assistant conversation of `turns` user messages (last one unanswered)."""
    openers = SUPPORT[topic][0]
    ctx = bind(r, "{order_id} {product} {date} {amount} {carrier} {city}")
    out: list[tuple[str, str]] = [("user", expand(r, r.choice(openers), ctx))]
    for _ in range(turns - 1):
        out.append(("assistant", support_reply(r, topic, ctx)))
        out.append(("user", expand(r, r.choice(FOLLOW_UPS), ctx)))
    return out


def support_reply(r: Rng, topic: str, ctx: dict[str, str]) -> str:
    body = prose(r, SUPPORT[topic][1], r.randint(1, 3), ctx)
    return f"{r.choice(OPENERS)} {body} {r.choice(CLOSERS)}"


def order_history_table(r: Rng, rows: int) -> str:
    """The runaway client's ask: a long markdown table that keeps getting 'continued'."""
    lines = ["| Order | Date | Product | Qty | Total | Status |", "|---|---|---|---|---|---|"]
    for _ in range(rows):
        lines.append(
            expand(r, "| {order_id} | {date} | {product} | ")
            + f"{r.randint(1, 4)} | ${expand(r, '{amount}')} | "
            + r.choice(["delivered", "shipped", "returned", "refunded", "processing"])
            + " |"
        )
    return "Here is the next part of your order history:\n\n" + "\n".join(lines)


# --- ticket-triage ------------------------------------------------------------------------------
TRIAGE: dict[str, list[str]] = {
    "billing": ["Charged twice|I was billed ${amount} twice on {date} for the same order."],
    "refund_request": ["Refund please|I sent the {product} back on {date}. When is my refund?"],
    "shipping_delay": ["Order {order_id} late|Tracking hasn't updated since {date} ({carrier})."],
    "damaged_item": ["Broken on arrival|The {product} arrived with a cracked housing."],
    "account_access": ["Can't log in|Password reset keeps failing with '{err}'."],
    "bug_report": ["App crash|The app crashes when I open the schedule tab for my {product}."],
    "feature_request": ["Suggestion|Please add a dark mode and a weekly usage report to the app."],
    "cancellation": ["Cancel subscription|Please cancel my Acme Care plan before {date}."],
    "address_change": ["Wrong address|Please ship order {order_id} to {street}, {city} instead."],
    "warranty_claim": ["Warranty|My {product} died after {n} months. Is this covered?"],
    "security_concern": ["Suspicious e-mail|I got a mail asking for my card PIN. Is it you?"],
    "general_question": ["Question|Do you ship to {country}, and do you charge import duties?"],
}
TICKET_PADDING = [
    "I've been a customer for {n} years and this has never happened before.",
    "Please get back to me as soon as possible.",
    "I attached a screenshot.",
    "Order placed on {date} from the {city} store.",
    "This is really frustrating.",
    "Thanks in advance!",
]


def ticket(r: Rng) -> tuple[str, str]:
    label = r.choice(list(TRIAGE))
    subject, body = expand(r, r.choice(TRIAGE[label])).split("|")
    pad = prose(r, TICKET_PADDING, r.randint(0, 3))
    text = f"Ticket #{r.randint(40000, 99999)}\nSubject: {subject}\n\n{body} {pad}\n\n{person(r)}"
    return text, label


# --- invoice-extract ----------------------------------------------------------------------------
ITEMS = [
    ("Cloud hosting, October 2026", 1, 1, 400, 3200),
    ("Consulting services (hours)", 4, 40, 90, 180),
    ("Software licence, annual seat", 1, 25, 120, 480),
    ("Ergonomic office chair", 1, 12, 180, 420),
    ("Printer toner cartridge", 2, 20, 35, 90),
    ("Catering, team offsite", 1, 1, 300, 2400),
    ("Freight and handling", 1, 1, 25, 180),
    ("Premium support plan", 1, 1, 200, 900),
    ("Data migration, milestone 2", 1, 1, 1500, 6000),
]


def invoice(r: Rng) -> tuple[str, str]:
    """An invoice as OCR'd text and the JSON a correct extraction returns."""
    ctx = bind(r, "{vendor} {street} {city} {date} {vendor2} {street2} {city2}")
    currency, rate = r.choice([("EUR", 21), ("EUR", 19), ("GBP", 20), ("USD", 0)])
    items: list[dict[str, Any]] = []
    for desc, qlo, qhi, plo, phi in r.sample(ITEMS, r.randint(2, 6)):
        q, p = r.randint(qlo, qhi), r.randint(plo * 100, phi * 100) / 100
        items.append(
            {"description": desc, "quantity": q, "unit_price": p, "amount": round(q * p, 2)}
        )
    sub = round(sum(i["amount"] for i in items), 2)
    tax = round(sub * rate / 100, 2)
    number = f"INV-2026-{r.randint(1000, 9999)}"
    rows = "\n".join(
        f"{i['description']:<36}{i['quantity']:>5}{i['unit_price']:>12,.2f}{i['amount']:>12,.2f}"
        for i in items
    )
    text = expand(
        r,
        f"INVOICE\n{{vendor}}\n{{street}}, {{city}}\nVAT ID: NL{r.randint(10**8, 10**9)}B01\n\n"
        f"Invoice No: {number}\nInvoice Date: {{date}}\nPayment terms: Net 30\n"
        f"Bill To: {{vendor2}}, {{street2}}, {{city2}}\n\n"
        f"{'Description':<36}{'Qty':>5}{'Unit Price':>12}{'Amount':>12}\n{rows}\n\n"
        f"Subtotal: {sub:,.2f}\nTax ({rate}%): {tax:,.2f}\n"
        f"TOTAL DUE: {currency} {sub + tax:,.2f}\n",
        ctx,
    )
    out = {
        "invoice_number": number,
        "invoice_date": ctx["date"],
        "vendor": ctx["vendor"],
        "customer": ctx["vendor2"],
        "currency": currency,
        "subtotal": sub,
        "tax": tax,
        "total": round(sub + tax, 2),
        "line_items": items,
    }
    return text, json.dumps(out)


# --- email-polish -------------------------------------------------------------------------------
EMAILS = [
    (
        "hey {first}, cant make {weekday} - can we do {weekday2} {time} instead? sry",
        "Hi {first},\n\nUnfortunately I can't make our meeting on {weekday}. Would {weekday2} at "
        "{time} work for you instead? Apologies for the short notice.",
    ),
    (
        "{first} pls send me the deck from the {team} review, need it for the board thing",
        "Hi {first},\n\nCould you please send me the slides from the {team} review? I'd like to "
        "include them in the board update.",
    ),
    (
        "following up on invoice {order_id}, still not paid, its {n} days overdue now",
        "Dear {first},\n\nI'm following up on invoice {order_id}, which is now {n} days overdue. "
        "Could you let me know when we can expect payment?",
    ),
    (
        "thx for yesterday {first}!! great chat, lets stay in touch. will intro u to {first2}",
        "Hi {first},\n\nThank you for taking the time to meet yesterday; I really enjoyed our "
        "conversation. As promised, I'll introduce you to {first2} later this week.",
    ),
    (
        "need approval for the {team} budget, {metric} work, about ${amount}. by {weekday} ok?",
        "Hi {first},\n\nCould you approve the {team} budget request of ${amount} for the {metric} "
        "project? A decision by {weekday} would keep us on schedule.",
    ),
]
EMAIL_EXTRAS = (
    "\n\nAlso, the {metric} numbers for {team} look better this month: up {pct}% since {date}.",
    "\n\nPlease let me know if you have any questions.",
    "\n\nI'll be out of office from {date} but reachable by phone.",
)


def email(r: Rng, sender: str) -> tuple[str, str]:
    draft_t, polished_t = r.choice(EMAILS)
    extra = r.choice(EMAIL_EXTRAS) if r.random() < 0.6 else ""
    ctx = bind(r, draft_t, polished_t, extra)
    draft = expand(r, draft_t, ctx) + (" " + expand(r, extra, ctx).strip() if extra else "")
    polished = expand(r, polished_t + extra, ctx) + f"\n\nBest regards,\n{sender}"
    return f"Please polish this e-mail draft:\n\n{draft}", polished


# --- code-review --------------------------------------------------------------------------------
PY_FUNCS = [
    "def {verb}_{noun}(self, payload: dict[str, Any]) -> list[{cls}]:\n"
    '    """{verb} the {noun} records in `payload`."""\n'
    "    if not payload:\n"
    '        raise ValueError("payload must not be empty")\n'
    "    result = []\n"
    '    for item in payload.get("{noun}s", []):\n'
    '        if item.get("status") == "{status}":\n'
    "            result.append(self._to_{noun}(item))\n"
    '    logger.info("{verb}_{noun}: %d items", len(result))\n'
    "    return result\n",
    "async def {verb}_{noun}(client: httpx.AsyncClient, {noun}_id: str) -> {cls} | None:\n"
    '    resp = await client.get(f"/api/v2/{noun}s/{{noun}_id}", timeout={n})\n'
    "    if resp.status_code == 404:\n"
    "        return None\n"
    "    resp.raise_for_status()\n"
    "    data = resp.json()\n"
    '    return {cls}(id=data["id"], total=Decimal(data["total"]), status=data["status"])\n',
    "def {verb}_{noun}_batch(rows: Iterable[Row], *, limit: int = {n}00) -> int:\n"
    "    count = 0\n"
    "    with session_scope() as session:\n"
    "        for chunk in chunked(rows, limit):\n"
    "            session.bulk_save_objects([{cls}.from_row(r) for r in chunk])\n"
    "            count += len(chunk)\n"
    "    return count\n",
]
TS_FUNCS = [
    "export async function {verb}{cls}(id: string): Promise<{cls} | undefined> {\n"
    "  const res = await fetch(`/api/{noun}s/${id}`);\n"
    "  if (!res.ok) {\n"
    "    throw new Error(`{verb} {noun} failed: ${res.status}`);\n"
    "  }\n"
    "  const body = (await res.json()) as {cls}Dto;\n"
    "  return body.status === '{status}' ? to{cls}(body) : undefined;\n"
    "}\n",
]
ADDED = [
    "    retries = 0",
    "    # TODO: remove once the {team} migration is done",
    "    cache_key = f\"{noun}:{payload['id']}\"",
    "    if len(result) > {n}000:",
    '        logger.warning("large {noun} batch")',
    "    time.sleep(0.{n})",
    "    except Exception:",
    "        pass",
    "    total += Decimal(str(item.get('amount', 0)))",
]
REVIEW_COMMENTS = [
    "`{verb}_{noun}` swallows every exception with a bare `except Exception: pass`; failures in "
    "the {team} pipeline will disappear silently. Log and re-raise, or catch the specific error.",
    "The new `time.sleep` inside the request path adds latency to every call; use the retry "
    "helper with exponential backoff instead.",
    "`cache_key` is computed but never used; either wire it into the cache lookup or drop it.",
    "Converting `amount` through `str()` hides float rounding that already happened upstream; "
    "parse the JSON with `parse_float=Decimal` instead.",
    "This loop issues one query per {noun}; with {n}000 rows that is an N+1 problem. Batch the "
    "lookups or prefetch with a join.",
    "The timeout of {n}s is shorter than the p95 of the {noun} service; expect spurious retries.",
    "Missing test for the empty-payload branch; add a case to `test_{noun}s.py`.",
    "Consider returning a typed `{cls}` instead of a bare dict so callers get type checking.",
    "The TODO references the {team} migration; please link the ticket so it does not linger.",
]


def _code_file(r: Rng) -> tuple[str, list[str], list[str]]:
    """One source file before and after a change, as line lists."""
    ts = r.random() < 0.3
    path = expand(r, "web/src/api/{noun}.ts" if ts else "services/{team}/{noun}_service.py")
    path = path.lower()
    templates = [r.choice(TS_FUNCS if ts else PY_FUNCS) for _ in range(r.randint(1, 3))]
    funcs = [expand(r, t, bind(r, t)) for t in templates]  # one name per function, used throughout
    old = "\n".join(funcs).splitlines()
    new = list(old)
    for _ in range(r.randint(2, 6)):
        at = r.randrange(1, len(new))
        if r.random() < 0.3:
            del new[at]
        else:
            new.insert(at, expand(r, r.choice(ADDED)))
    return path, old, new


def diff(r: Rng, files: int) -> str:
    parts = []
    for _ in range(files):
        path, old, new = _code_file(r)
        head = f"diff --git a/{path} b/{path}\n"
        parts.append(
            head + "\n".join(difflib.unified_diff(old, new, f"a/{path}", f"b/{path}", lineterm=""))
        )
    return "\n".join(parts)


def review(r: Rng, diff_text: str, comments: int = 0) -> str:
    comments = comments or r.randint(4, 14)
    paths = re.findall(r"^\+\+\+ b/(\S+)", diff_text, re.M) or ["src/app.py"]
    items = "\n".join(
        f"{i + 1}. `{r.choice(paths)}:{r.randint(3, 60)}`: {expand(r, r.choice(REVIEW_COMMENTS))}"
        for i in range(comments)
    )
    verdict = r.choice(
        ["Request changes.", "Approve with comments.", "Request changes (blocking)."]
    )
    return (
        f"## Summary\nThis change touches {len(paths)} file(s). The intent is clear, but there are "
        f"correctness and reliability issues to address before merging.\n\n## Findings\n{items}\n\n"
        f"## Suggested fix\n```python\n{expand(r, PY_FUNCS[0])}```\n\n## Verdict\n{verdict}"
    )


# --- math-solver --------------------------------------------------------------------------------
def math_problem(r: Rng) -> tuple[str, str]:
    """A multi-step problem and a worked solution (answers are actually correct)."""
    kind = r.randrange(4)
    if kind == 0:
        a, x1, x2 = r.randint(2, 5), r.randint(-9, 9), r.randint(-9, 9)
        b, c = -a * (x1 + x2), a * x1 * x2
        q = f"Find all real solutions of {a}x^2 + ({b})x + ({c}) = 0 and verify them."
        steps = [
            f"The discriminant is D = b^2 - 4ac = {b * b} - {4 * a * c} = {b * b - 4 * a * c}.",
            f"x = (-b ± sqrt(D)) / 2a = ({-b} ± {abs(a * (x1 - x2))}) / {2 * a}.",
            f"Check x = {x1}: {a}·{x1 * x1} + ({b})·{x1} + ({c}) = 0. Likewise for x = {x2}.",
        ]
        ans = f"x = {min(x1, x2)} or x = {max(x1, x2)}"
    elif kind == 1:
        red, blue = r.randint(3, 9), r.randint(3, 9)
        n = red + blue
        p = Fraction(3 * red * (red - 1) * blue, n * (n - 1) * (n - 2))
        q = (
            f"A bag holds {red} red and {blue} blue marbles. Three are drawn without replacement. "
            "What is the probability that exactly two are red?"
        )
        steps = [
            f"Total ways: C({n},3) = {n * (n - 1) * (n - 2) // 6}.",
            f"Favourable: C({red},2)·C({blue},1) = {red * (red - 1) // 2 * blue}.",
            "Divide favourable by total and simplify.",
        ]
        ans = f"P = {p}"
    elif kind == 2:
        base, exp, mod = r.randint(3, 19), r.randint(100, 999), r.choice([7, 11, 13, 17, 23])
        q = f"Find the remainder when {base}^{exp} is divided by {mod}."
        steps = [
            f"By Fermat's little theorem {base}^{mod - 1} ≡ 1 (mod {mod}) since {mod} is prime.",
            f"{exp} = {mod - 1}·{exp // (mod - 1)} + {exp % (mod - 1)}, so we need "
            f"{base}^{exp % (mod - 1)} mod {mod}.",
            "Reduce step by step by repeated squaring.",
        ]
        ans = f"{pow(base, exp, mod)}"
    else:
        n = r.randint(10, 60)
        q = f"Compute S = sum_{{k=1}}^{{{n}}} k(k+1) and prove the closed form by induction."
        steps = [
            "Write k(k+1) = k^2 + k and use the standard sums.",
            "Claim S(n) = n(n+1)(n+2)/3. Base case n = 1: 2 = 1·2·3/3.",
            "Inductive step: S(n+1) = n(n+1)(n+2)/3 + (n+1)(n+2) = (n+1)(n+2)(n+3)/3.",
        ]
        ans = f"S = {n * (n + 1) * (n + 2) // 3}"
    body = "\n".join(f"**Step {i + 1}.** {s}" for i, s in enumerate(steps))
    return q, f"{body}\n\nEach step follows from the previous one.\n\n**Answer:** {ans}"


# --- nightly-digest and doc-qa ------------------------------------------------------------------
REPORT = [
    "The {team} team shipped {n} changes this week; {metric} moved by {pct}% against the plan.",
    "{first} {last} raised a concern about the {product} supply from {vendor}.",
    "Customer complaints about late {carrier} deliveries in {city} rose {pct}% week over week.",
    "The incident on {date} (checkout timeouts, {n} minutes) was traced to a database failover.",
    "Action: {first} to follow up with {vendor} on the delayed shipment by {weekday}.",
    "Returns of the {product} remain above target at {pct}%, mostly for cosmetic damage.",
    "Marketing spend in {country} was reallocated to search after a weak {metric} trend.",
    "The on-call rotation for {team} flagged {n} pages, {n2} of them false positives.",
    "Finance approved ${amount}k for the {team} roadmap item scheduled for {date}.",
    "A customer in {city} reported that the {product} firmware update failed twice.",
    "Decision: the {metric} dashboard becomes the single source of truth from {date}.",
    "Hiring: {n} open roles in {team}; {first} {last} joins as engineering manager on {date}.",
]
KINDS = ["Weekly ops report", "Meeting notes", "Incident review", "Customer feedback digest"]


def document(r: Rng, sentences: int) -> str:
    title = f"{r.choice(KINDS)}: {expand(r, '{team}')}, week {r.randint(40, 44)}"
    paras = [prose(r, REPORT, r.randint(4, 7)) for _ in range(max(1, sentences // 5))]
    return title + "\n\n" + "\n\n".join(paras)


def summary(r: Rng, doc: str) -> str:
    sentences = re.split(r"(?<=\.)\s+", doc.split("\n\n", 1)[1])
    picks = r.sample(sentences, 3)
    return "Summary:\n" + "\n".join(f"- {s.strip()}" for s in picks) + "\nNo blockers reported."


KB = [
    "To enable SSO, an admin opens Settings > Security and uploads the IdP metadata XML.",
    "API keys are scoped per workspace and expire after {n}0 days unless renewed.",
    "Data is retained for {n} months on the Standard plan and 7 years on Enterprise.",
    "Webhooks retry up to {n} times with exponential backoff before being marked failed.",
    "The rate limit is {n}00 requests per minute per key; bursts above it return HTTP 429.",
    "Exports are generated as CSV or Parquet and delivered to S3, GCS or Azure Blob.",
    "Invoices are issued on the 1st of each month in EUR, USD or GBP.",
    "Audit logs record every admin action and can be streamed to a SIEM.",
    "Sandbox workspaces are reset every {weekday} at 02:00 UTC.",
    "Role changes take effect on the next login; existing sessions keep their old role.",
]
# question -> index of the KB passage that answers it
QUESTIONS = [
    ("How do I turn on single sign-on?", 0),
    ("How long do you keep our data on the Standard plan?", 2),
    ("What happens when a webhook endpoint is down?", 3),
    ("What is the API rate limit?", 4),
    ("Can I export data to Google Cloud Storage?", 5),
    ("When do role changes apply?", 9),
]


def doc_qa(r: Rng) -> tuple[str, str]:
    question, source = r.choice(QUESTIONS)
    fact = expand(r, KB[source])
    chunks = [
        prose(r, KB[:source] + KB[source + 1 :], r.randint(3, 6)) for _ in range(r.randint(3, 5))
    ]
    hit = r.randrange(len(chunks))
    chunks[hit] += " " + fact  # the retriever found the answer in one passage
    context = "\n\n".join(
        f"[{i + 1}] (docs/{r.choice(['admin', 'api', 'billing', 'security'])}.md)\n{c}"
        for i, c in enumerate(chunks)
    )
    answer = f"According to [{hit + 1}]: {fact} Let me know if you need the exact steps."
    return f"Context:\n\n{context}\n\nQuestion: {question}", answer


# --- sentiment and labs -------------------------------------------------------------------------
REVIEWS = {
    "positive": [
        "Love my {product}, setup took five minutes.",
        "Delivery by {carrier} was fast and the packaging was great.",
        "Support sorted out my problem on the first try. Five stars.",
        "Works exactly as described, would buy again.",
    ],
    "negative": [
        "The {product} broke after {n} weeks and nobody answers my e-mails.",
        "Arrived late and the box was crushed.",
        "The app keeps logging me out, really annoying.",
        "Overpriced for what it does, returning it.",
    ],
}


def sentiment(r: Rng) -> tuple[str, str]:
    label = r.choice(["positive", "negative"])
    return f"Review: {prose(r, REVIEWS[label], r.randint(1, 3))}\n\nLabel:", label


def labs(r: Rng) -> tuple[str, str]:
    ctx = bind(r, "{product} {city}")
    prompt = expand(
        r, "Write a two-sentence product blurb for the {product} for our {city} shop.", ctx
    )
    out = expand(r, "The {product} brings pro-level results home. Order today in {city}.", ctx)
    return prompt, out


# --- invoice-extract's prompt regression (the tokens-jump plant of issue 12) ---------------------
# A release pastes the whole vendor master data into the system prompt "so the model can match
# vendor names": every call from then on carries it, though the invoices name their vendor.
VENDOR_TERMS = ["Net 30", "Net 45", "Net 60", "2/10 Net 30", "Due on receipt"]


def vendor_directory(r: Rng, entries: int) -> str:
    """The block the regression appends: one line per vendor of the master data."""
    lines = [
        "## Vendor master data (match the invoice's vendor to one of these ids)",
        "id | legal name | city | VAT id | payment terms | currency | cost centre",
    ]
    for i in range(entries):
        vendor, city = r.choice(G["vendor"]), r.choice(G["city"])  # type: ignore[arg-type]
        currency = r.choice(["EUR", "GBP", "USD"])
        lines.append(
            f"V-{10000 + 37 * i} | {vendor} | {city} | NL{r.randint(10**8, 10**9)}B0{i % 10}"
            f" | {r.choice(VENDOR_TERMS)} | {currency} | CC-{r.randint(100, 999)}"
        )
    return "\n".join(lines)


# --- returns-agent (the trimming plant) ---------------------------------------------------------
# The policy block the app's template pastes twice: once in the base prompt and again, verbatim, as
# a "reminder" at the end (a copy-paste bug nobody noticed). Exactly one paragraph, no blank lines.
RETURNS_POLICY = (
    "## Return policy\nItems can be returned within 30 days of delivery for a full refund. Opened "
    "consumables (filters, toner, coffee pods) cannot be returned. Damaged or faulty items are "
    "replaced or refunded at any time within the 24-month warranty. Refunds over $500 and any "
    "customer with three or more returns in the last 90 days must be escalated to a human agent."
)
RETURN_REASONS = [
    "The {product} arrived with a cracked front panel.",
    "I changed my mind, the {product} is too big for my kitchen.",
    "It stopped working after {n} weeks.",
    "Wrong colour delivered, I ordered the black one.",
    "The {product} makes a loud rattling noise.",
    "I bought it as a gift but they already had one.",
]
RETURN_DECISIONS = [
    "Decision: approve. Reason: within 30 days of delivery and not a consumable.",
    "Decision: approve. Reason: faulty item covered by the 24-month warranty.",
    "Decision: reject. Reason: delivered more than 30 days ago and not faulty.",
    "Decision: escalate. Reason: refund over $500 needs a human agent.",
    "Decision: escalate. Reason: three or more returns in the last 90 days.",
]


def order_record(r: Rng) -> dict[str, Any]:
    """The order the returns agent looks up; the app pastes it into the prompt pretty-printed."""
    items = [
        {
            "sku": f"SKU-{r.randint(10000, 99999)}",
            "name": expand(r, "{product}"),
            "quantity": r.randint(1, 3),
            "unit_price": round(r.randint(1900, 89900) / 100, 2),
            "consumable": r.random() < 0.2,
        }
        for _ in range(r.randint(1, 4))
    ]
    events = [
        {"date": expand(r, "{date}"), "status": s, "location": expand(r, "{city}")}
        for s in ["ordered", "shipped", "in_transit", "delivered"][: r.randint(2, 4)]
    ]
    return {
        "order_id": expand(r, "{order_id}"),
        "customer": {"name": person(r), "tier": r.choice(["standard", "plus", "business"])},
        "items": items,
        "shipment": {"carrier": expand(r, "{carrier}"), "events": events},
        "returns_last_90_days": r.choice([0, 0, 0, 1, 2, 3]),
        "payment": {"method": r.choice(["card", "paypal", "invoice"]), "currency": "USD"},
    }


def return_request(r: Rng) -> tuple[str, str, str]:
    """(the prompt with the order record pretty-printed, the same prompt with it minified, the
    decision). The two prompts differ only in the JSON's whitespace: the lossless trim."""
    record = order_record(r)
    reason = expand(r, r.choice(RETURN_REASONS))
    ask = "Decide: approve, reject or escalate, with a one-line reason."

    def prompt(data: str) -> str:
        return f'Return request from the customer:\n"{reason}"\n\nOrder record:\n{data}\n\n{ask}'

    pretty = prompt(json.dumps(record, indent=2))
    minified = prompt(json.dumps(record, separators=(",", ":")))
    return pretty, minified, r.choice(RETURN_DECISIONS)


# --- product-copy (the runaway-output plant) ----------------------------------------------------
COPY_LINES = [
    "The {product} is built for busy homes: quiet, efficient and easy to clean.",
    "Set it up in minutes with the Acme Home app and control it from anywhere.",
    "Energy-saving mode cuts running costs by up to {pct}% compared with older models.",
    "A {n}-year parts warranty and free returns within 30 days come as standard.",
    "Its compact design fits neatly on a counter, a shelf or a bedside table.",
    "Customers in {city} rate it {n}.{n2} out of 10 for reliability.",
    "Ships from our {city} warehouse with {carrier} next-day delivery.",
    "Works with voice assistants and schedules you set once and forget.",
]


def product_copy(r: Rng) -> tuple[str, str]:
    """A request for a product description and a normal-length answer."""
    ctx = bind(r, "{product} {city} {carrier}")
    prompt = expand(
        r, "Write the product page description for the {product}. Audience: {city} shoppers.", ctx
    )
    paras = [prose(r, COPY_LINES, r.randint(2, 4), ctx) for _ in range(r.randint(1, 3))]
    return prompt, "\n\n".join(paras)


def runaway_copy(
    r: Rng, normal: str, tokens_wanted: int, tok: Callable[[str], int]
) -> tuple[str, bool]:
    """A runaway answer and whether it loops: after the normal text, either one sentence repeated
    (degenerate repetition) or an endless, non-repeating spec sheet, to about `tokens_wanted`."""
    loop = r.random() < 0.6
    sentence = expand(r, r.choice(COPY_LINES))
    parts, size = [normal], tok(normal)
    while size < tokens_wanted:
        if loop:
            chunk = " ".join([sentence] * 20)
        else:
            chunk = "\n".join(
                expand(
                    r,
                    f"Spec {r.randint(100, 999)}: {{product}} variant {{order_id}} rated "
                    "{n}{n2} W, {pct} dB, ships from {city} via {carrier} on {date}.",
                )
                for _ in range(10)
            )
        parts.append(chunk)
        size += tok(chunk)
    return "\n\n".join(parts), loop


# --- address-extract (the reasoning plant) ------------------------------------------------------
def address_form(r: Rng) -> tuple[str, str]:
    """A messy free-text address typed into a checkout form and its extraction (easy work)."""
    name, street, city = person(r), expand(r, "{street}"), expand(r, "{city}")
    postcode = f"{r.randint(1000, 9999)} {r.choice('ABCDEFGHJKLMNPRSTWXZ')}{r.choice('ABDEHLNP')}"
    country = r.choice(["Netherlands", "Germany", "France", "Ireland", "Poland", "Italy"])
    messy = r.choice(
        [
            f"{name.lower()}, {street.lower()} {postcode} {city.upper()} {country.lower()}",
            f"ship to {name} - {street}, {city} ({postcode}), {country} pls",
            f"{street}\n{postcode} {city}\n{country}\nattn {name}",
        ]
    )
    out = {"name": name, "street": street, "postcode": postcode, "city": city, "country": country}
    return f"Address as typed by the customer:\n{messy}", json.dumps(out)


# --- system prompts -----------------------------------------------------------------------------
# The stable instruction blocks. generate.py pads each with few-shot examples up to its target size
# (real prompts grow that way), so here only the hand-written head lives.
SYSTEM_HEADS = {
    "support-chat": "You are Ava, the customer support assistant of Acme Home, a retailer of smart "
    "home appliances.\n\n## Policies\n- Be warm, concise and specific; never invent order data.\n"
    "- Refunds over $500 need a human agent: say so and offer a callback.\n- Never ask for full "
    "card numbers or passwords.\n- Warranty is 24 months from delivery; batteries 12 months.\n"
    "- Escalate threats, legal questions or safety issues (smoke, burns) immediately.\n"
    "- Answer in the customer's language.\n",
    "ticket-triage": "You classify incoming helpdesk tickets for Acme Home.\n\nReturn exactly one "
    "label from: " + ", ".join(TRIAGE) + ".\nReturn only the label, no punctuation, no "
    "explanation. If several apply, pick the one the customer needs resolved first. Security "
    "always wins.\n",
    "invoice-extract": "You extract structured data from invoices (OCR text). Return one JSON "
    "object with keys invoice_number, invoice_date, vendor, customer, currency, subtotal, tax, "
    "total, line_items[description, quantity, unit_price, amount]. Numbers as JSON numbers, dates "
    "as YYYY-MM-DD. Never guess: use null for missing fields.\n",
    "email-polish": "## Acme Corp e-mail style guide\nRewrite the user's draft into a clear, "
    "friendly, professional e-mail. Keep the meaning and every fact (dates, amounts, names). "
    "British spelling. No exclamation marks. Sign off with 'Best regards' and the sender's name.\n",
    "code-review": "You are a senior engineer reviewing pull requests for the Acme platform "
    "(Python 3.12 services, TypeScript web app).\n\nReview for correctness, security, performance "
    "and readability. Cite file:line for every finding, order findings by severity, propose a "
    "concrete fix, end with a verdict: Approve, Approve with comments, or Request changes.\n",
    "math-solver": "You are a patient maths tutor. Solve the problem step by step, justify every "
    "step, check the result, and finish with a line '**Answer:** ...'.\n",
    "nightly-digest": "You summarise internal documents for the morning digest e-mail. Produce a "
    "'Summary:' line then 3 bullets with decisions, risks and owners, then blockers.\n",
    "doc-qa": "Answer questions about the Acme Cloud platform using ONLY the numbered context "
    "passages. Cite passages like [2]. If the answer is not in the context, say you don't know.\n",
    "sentiment": "Classify the sentiment of a product review. Answer with exactly one word: "
    "positive or negative.\n",
    "labs-experiment": "You write short marketing copy for Acme Home.\n",
    "returns-agent": "You help Acme Home support agents decide product returns. Read the "
    "customer's request and the order record, apply the policy below, and answer with one "
    "decision line.\n\n" + RETURNS_POLICY + "\n",
    "product-copy": "You write product page descriptions for the Acme Home web shop. Friendly, "
    "concrete, no superlatives, two or three short paragraphs.\n",
    "address-extract": "Extract the shipping address from the customer's text. Return one JSON "
    "object with keys name, street, postcode, city, country. Fix capitalisation; never invent "
    "missing parts (use null).\n",
}


def example(r: Rng, feature: str) -> str:
    """One few-shot example for `feature`'s system prompt."""
    if feature == "support-chat":
        topic = r.choice(list(SUPPORT))
        return f"Customer: {support_turns(r, topic, 1)[0][1]}\nAva: {support_reply(r, topic, {})}"
    if feature == "ticket-triage":
        text, label = ticket(r)
        return f"{text}\nLabel: {label}"
    if feature == "invoice-extract":
        text, out = invoice(r)
        return f"{text}\nOutput: {out}"
    if feature == "email-polish":
        draft, out = email(r, person(r))
        return f"{draft}\n\nRewritten:\n{out}"
    if feature == "code-review":
        d = diff(r, 1)
        return f"{d}\n\nReview:\n{review(r, d, 2)}"
    if feature == "math-solver":
        q, a = math_problem(r)
        return f"Problem: {q}\n{a}"
    if feature == "nightly-digest":
        doc = document(r, 10)
        return f"{doc}\n\n{summary(r, doc)}"
    if feature == "doc-qa":
        ctx, ans = doc_qa(r)
        return f"{ctx}\nAnswer: {ans}"
    if feature == "sentiment":
        text, label = sentiment(r)
        return f"{text} {label}"
    if feature == "returns-agent":  # compact: the only pretty JSON is the planted one
        return f"Request: {expand(r, r.choice(RETURN_REASONS))}\n{r.choice(RETURN_DECISIONS)}"
    if feature == "product-copy":
        prompt, out = product_copy(r)
        return f"{prompt}\n{out}"
    if feature == "address-extract":
        text, out = address_form(r)
        return f"{text}\nOutput: {out}"
    return "\n".join(labs(r))


RUNAWAY_NUDGES = [
    "continue",
    "The table is incomplete. Continue and include ALL orders.",
    "keep going, you stopped again",
    "Continue from the last row.",
]
# provider -> (HTTP status or None for a client-side timeout, error type, message)
ERRORS_BY_PROVIDER: dict[str, list[tuple[int | None, str, str]]] = {
    "openai": [
        (429, "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 2s."),
        (500, "server_error", "The server had an error while processing your request."),
        (503, "service_unavailable", "The engine is currently overloaded."),
        (None, "timeout", "Request timed out after 60s."),
    ],
    "azure": [
        (429, "429", "Requests to the ChatCompletions_Create Operation have exceeded call rate."),
        (500, "InternalServerError", "The service encountered an internal error."),
    ],
    "anthropic": [
        (529, "overloaded_error", "Overloaded"),
        (429, "rate_limit_error", "Number of request tokens has exceeded your rate limit."),
        (500, "api_error", "Internal server error"),
    ],
    "google": [
        (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    ],
    "self-hosted": [
        (502, "bad_gateway", "upstream connect error or disconnect/reset before headers"),
        (None, "timeout", "Request timed out after 60s."),
    ],
}
