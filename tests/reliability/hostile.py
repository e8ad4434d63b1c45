"""Hostile requests for every route of the app, fired and counted; the database's row
counts and checksums before and after. Used by tests/reliability/test_hostile_stack.py
(short) and bench/hostile.py (long, >= 10,000).

`build_requests(targets, n, seed)` walks the app's own route table (`routes_of`), so a
new route is attacked without being listed here, and adds unknown paths. Every request is
unauthenticated, badly signed or malformed — missing or wrong keys, tokens, cookies and
signatures (WeChat: stale timestamps, replayed URLs with another body, a valid
`msg_signature` over garbage or over an envelope for another app; Twilio: signed with
another token or for another URL; Aliyun: wrong push token, or the right one with a body
that is no list of reports), malformed, oversized and wrongly typed bodies, NUL and
control characters, digits that are not 0-9, bytes that are not UTF-8 in the path,
query, headers and body (raw sockets for what aiohttp will not send), huge headers, path
traversal. With `authed=True` the `/api` routes get a valid key or assistant token, and
the console's a signed-in session, and only hostile bodies, paths and queries: still
nothing may change, so their paths name no existing row, their bodies are all invalid,
and a console form carries the right CSRF token only where its path names no row.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from dataclasses import dataclass, field

from yarl import URL

from bot.api.common import ASSISTANT_SCHEME
from bot.api.openapi import PATH as OPENAPI_PATH
from tests.payloads import WECHAT_AES_KEY, WECHAT_TOKEN, crypto, signed_query, twilio_signature

ATTEMPT_TABLES = {"staff_sign_in_failures"}
"""A refused sign-in is written down (the limit shared by replicas, ISSUE 10.7): allowed."""

ODD_DIGITS = ["²", "①", "١", "１", "𝟏", "٣٤", "9" * 30, "9" * 5000, "-1", "0", "1_0", "1e9"]
CONTROL = ["a\x00b", "\x01", "\x7f", "\ud800", "\x1b[31m", "x\x08"]
"""Text every JSON body check refuses (control characters, a lone surrogate)."""
ODD_TEXT = [*CONTROL, "a\u202eb", "%00", "%FF", "\u3000", "\ufeff"]
TRAVERSAL = ["..%2F..%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/", "....//", "%252e%252e", "%C0%AE%C0%AE"]
BAD_TOKENS = ["Bearer demo-token-A00", "Bearer \u00e9", "Bearer " + "0" * 64, "Token x"]
UNKNOWN = ["/", "/nope", "/api/nope", "/api/members", "/api/", "/wechat/x", "/staff/nope",
           "/.env", "/api/openapi.json/..%2f", "//api//members", "/%00", "/metrics/x"]  # fmt: skip
RAW_HEADERS = [b"Authorization: Bearer \xff\xfe", b"Cookie: memberbot_staff=\xff",
               b"X-Twilio-Signature: \xc3\x28", b"Authorization: \x00",
               b"X-Big: " + b"a" * 12_000, b"X-Huge: " + b"b" * 70_000,
               b"\r\n".join(b"X-H%d: v" % i for i in range(150))]  # fmt: skip
CONTENT_TYPES = ["multipart/form-data", "text/plain", "multipart/form-data; boundary=x",
                 "application/json; charset=latin-1"]  # fmt: skip


@dataclass(frozen=True)
class Targets:
    """What the requests aim at: real rows (a member, a store) and the right secrets,
    so that only one thing is wrong with each request."""

    routes: list[tuple[str, str, str]]
    """(method, path, auth kind) from `routes_of`."""
    api_key: str
    token: str
    """An assistant's token."""
    phone: str = "+8613800138001"
    store: str = "DEMO01"
    public_url: str = "http://127.0.0.1"
    push_token: str = ""
    app_id: str = ""
    captured: list[tuple[dict, bytes]] = field(default_factory=list)
    """Signed WeChat requests already delivered (query, body): replayed with other bodies."""
    cookie: str = ""
    """A signed-in staff console session (its `memberbot_staff` cookie) and its CSRF token."""
    csrf: str = ""


def routes_of(app) -> list[tuple[str, str, str]]:
    """(method, path, auth kind) of every route of `app` (an unstarted `create_app`)."""
    out = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or not path:
            continue
        note = getattr(route.handler, "openapi", None)
        if path.startswith("/api/"):
            kind = "token" if note and note.auth == ASSISTANT_SCHEME else "key"
            kind = "none" if path == OPENAPI_PATH else kind
        elif path.startswith("/staff") and hasattr(route.handler, "__wrapped__"):
            kind = "cookie"  # behind `bot.staff.auth.console` (the assets are public)
        else:
            kind = {"/wechat": "wechat", "/metrics": "metrics", "/staff/signin": "form"}.get(
                path, "push" if path.startswith("/sms/aliyun") else "none"
            )
            kind = "twilio" if path.startswith("/sms/twilio") else kind
        out.append((route.method, path, kind))
    return sorted(out)


STATIC_JSON = [b"{", b'{"a":', b"\xff\xfe{}", b'{"a": NaN}', b'{"a": Infinity}', b"[" * 50_000,
               b'{"a": 1' + b"0" * 5000 + b"}", b'{"a":"\\ud800"}', b'{"a":"\\u0000"}',
               b'\xef\xbb\xbf{"phone": "+86138\\u0000"}', b"x" * 70_000, b"\x00" * 10,
               b'{"phone": "' + b"9" * 1_000_000 + b'"}']  # fmt: skip


def json_body(rng: random.Random, t: Targets) -> bytes:
    """A body no JSON route accepts (wrong shape, control text, out-of-range numbers)."""
    if rng.random() < 0.35:
        return rng.choice(STATIC_JSON)
    bad = rng.choice(CONTROL)
    variants: list[object] = [
        [], None, 1, "s", {"phone": None}, {"phone": ["a"]}, {"phone": {"$gt": ""}},
        {"phone": rng.choice(ODD_DIGITS)}, {"phone": t.phone, "name": bad},
        {"receipt_no": "R\x00", "phone": t.phone, "store": t.store,
         "amount": rng.choice(["1_000", "１０", "𝟏𝟎", "1e999999", "NaN", "9" * 400, True]),
         "at": rng.choice(["2026-11-01T10:00:00+08:00", "２０２６-11-01", "9" * 50]), "items": []},
        {"status": rng.choice(["\x00", "x" * 10000, 1, None, ["approved"]])},
        {"member": t.phone, "occasion": "birthday", "note": bad},
        {"points": 10 ** 40, "phone": t.phone, "reason": "r", "key": "k"},
        {"text": bad, "store": t.store, "items": [{"qty": "２"}]},
        {"code": t.store, "name": bad}, {"reason": bad}, {"note": bad}, {"store": bad},
    ]  # fmt: skip
    value = rng.choice(variants)
    return json.dumps(value, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def form_bodies() -> list[bytes]:
    return [
        b"From=\xff&Body=hi", b"From=%FF&Body=hi", b"From=%2B8613800138001&Body=a%00b",
        b"code=A001&secret=wrong", b"code=%00&secret=%00", b"secret=" + b"a" * 70_000,
        b"&".join(b"f%d=1" % i for i in range(500)), b"csrf_token=x&next=/staff/%00",
        b"MessageSid=SM1&MessageStatus=delivered", b"q=%E2%91%A0&csrf_token=",
        b"=&&==&%", b"Body=\xe4\xb8", b"", b"a=" + b"%" * 3000,
    ]  # fmt: skip


def xml_bodies() -> list[bytes]:
    return [
        b"<xml><ToUserName>a</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
        b"<MsgType>text</MsgType><Content>\xe7\xa7\xaf\xe5\x88\x86</Content><MsgId>1</MsgId></xml>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml>&a;&a;</xml>',
        b"<xml><Encrypt>not base64!</Encrypt></xml>", b"<xml>&#0;</xml>", b"<xml", b"\xff\xfe<",
        b"<xml><CreateTime>\xd9\xa1</CreateTime></xml>", b"<xml>" + b"<a>" * 5000 + b"</xml>",
        b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><xml>&x;</xml>', b"<xml>" + b"a" * 70_000,
    ]  # fmt: skip


def _sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def wechat_request(rng: random.Random, t: Targets) -> tuple[str, bytes]:
    """A /wechat POST that is signed wrongly, stale, replayed or signed over garbage."""
    now = str(int(time.time()))
    pick = rng.randrange(6)
    if pick == 0 and t.captured:  # a delivered request again: the same, or another body
        query, body = rng.choice(t.captured)
        other = rng.choice([body, body + b" ", body.replace(b"<xml>", b"<xml><a/>")])
        return _query(query), other
    if pick == 1:  # a valid envelope, but its timestamp a day old or far ahead
        ts = str(int(time.time()) + rng.choice([-86_400, 86_400, -(10**6)]))
        return _aes(t, "<xml><MsgType>text</MsgType></xml>", ts, t.app_id)
    if pick == 2:  # a valid msg_signature over an Encrypt that decrypts to nothing
        encrypt = rng.choice(["not base64!", "QUJD", "A" * 88, "=" * 4, "\u00e9"])
        query = {**signed_query(timestamp=now, nonce="n"), "encrypt_type": "aes"}
        query["msg_signature"] = _sign(WECHAT_TOKEN, now, "n", encrypt)
        return _query(query), f"<xml><Encrypt>{encrypt}</Encrypt></xml>".encode()
    if pick == 3:  # rightly encrypted: for another app, or holding no usable message
        inner = rng.choice(INNER_XML)
        return _aes(t, inner, now, rng.choice([t.app_id, "wxffffffffffffffff"]))
    ts = rng.choice(["1000000000", now, "²", "9" * 40, "", "-1"])
    sig = rng.choice(["", "0" * 40, "zz", "%00", _sign(WECHAT_TOKEN, ts, "n")])
    extra = rng.choice(["", "&encrypt_type=aes&msg_signature=00", "&encrypt_type=aes",
                        "&echostr=%FF", "&openid=%00"])  # fmt: skip
    return f"signature={sig}&timestamp={ts}&nonce=n{extra}", rng.choice(xml_bodies())


INNER_XML = [
    "<xml><MsgType>text</MsgType><Content>积分</Content></xml>",  # no sender
    "<xml><FromUserName>o</FromUserName><MsgType>" + "t" * 40 + "</MsgType><MsgId>1</MsgId></xml>",
    "not xml",
    "<xml><a>&b;</a></xml>",
]


def _aes(t: Targets, inner: str, ts: str, app_id: str) -> tuple[str, bytes]:
    envelope = crypto(WECHAT_TOKEN, WECHAT_AES_KEY, app_id).encrypt_message(inner, "n", ts)
    encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]>", envelope).group(1)
    query = {**signed_query(timestamp=ts, nonce="n"), "encrypt_type": "aes"}
    query["msg_signature"] = _sign(WECHAT_TOKEN, ts, "n", encrypt)
    return _query(query), f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()


def _query(params: dict) -> str:
    return str(URL.build(query=params)).lstrip("?")


SIGNED_TWILIO = [  # rightly signed, and still refused: an over-long MessageSid, or nothing
    {"MessageSid": "SM" + "0" * 80, "From": "+8613800138001", "Body": "积分"},
    {"MessageSid": "SM" + "1" * 80, "MessageStatus": "delivered"},
    {"MessageSid": "", "MessageStatus": ""},
]


def twilio_request(rng: random.Random, t: Targets, path: str) -> tuple[bytes, dict[str, str]]:
    """(form body, headers): a hostile form badly signed, or a signed form refused."""
    if rng.random() < 0.2:
        form = rng.choice(SIGNED_TWILIO)
        body = str(URL.build(query=form)).lstrip("?").encode()
        return body, {"X-Twilio-Signature": twilio_signature(t.public_url + path, form)}
    body = rng.choice(form_bodies())
    form = dict(p.split("=", 1) for p in body.decode("latin-1").split("&") if "=" in p)
    wrong = rng.choice(
        [twilio_signature(t.public_url + path, form, "another-token"),
         twilio_signature("https://evil.example.com" + path, form), "bad", "="]
    )  # fmt: skip
    return body, rng.choice([{}, {"X-Twilio-Signature": wrong}])


def aliyun_body(rng: random.Random, t: Targets) -> bytes:
    """What the right push token may bring and is still refused (400)."""
    item = {"phone_number": t.phone.lstrip("+"), "content": "积分", "sequence_id": 1}
    return json.dumps(rng.choice([
        {}, "x", [1], [None], [item] * 101, [{**item, "phone_number": ""}],
        [{**item, "content": "x" * 1001}], [{**item, "content": rng.choice(CONTROL)}],
        [{"biz_id": "", "success": "yes"}], [{**item, "sequence_id": "9" * 100}],
    ]), ensure_ascii=False).encode("utf-8", "surrogatepass")  # fmt: skip


def headers_for(kind: str, rng: random.Random, t: Targets, authed: bool) -> dict[str, str]:
    if authed and kind in ("key", "token"):  # a valid key or token: the body is what is bad
        return {"Authorization": f"Bearer {t.api_key if kind == 'key' else t.token}"}
    if authed and kind == "cookie":
        return {"Cookie": f"memberbot_staff={t.cookie}"}
    if kind in ("key", "metrics", "token"):
        value = rng.choice(["", "Bearer", "Bearer ", "Bearer wrong", "Basic " + "a" * 20,
                            "Bearer " + "x" * 5000, f"bearer {t.api_key[:-1]}", "Bearer\ta",
                            f"Bearer {t.token[:-1]}", f"Bearer {t.api_key}x",
                            *BAD_TOKENS])  # fmt: skip
        value = f"Bearer {t.api_key}" if kind == "token" and rng.random() < 0.2 else value
        return {"Authorization": value} if value else {}
    if kind == "cookie":
        cookie = rng.choice(["memberbot_staff=forged", "memberbot_staff=" + "a" * 4000, "=;;="])
        return rng.choice([{}, {"Cookie": cookie}])
    return {}


def query_for(kind: str, rng: random.Random, t: Targets) -> str:
    if kind == "push":
        return rng.choice(["", "token=", "token=wrong", "token=%00", "token=%FF",
                           f"token={t.push_token}x", f"token={t.push_token}"])  # fmt: skip
    if rng.random() < 0.7:  # most reach the handler: the edge refuses several queries below
        return ""
    return rng.choice(["status=open", "store=DEMO99", "status=%00", "status=%FF",
                       "status=a&status=x", "store=%E2%91%A0",
                       f"store={t.store}", "lang=en%00", "next=//evil", "start=2026-13-45",
                       "end=２０２６-01-01", "sent=new&occasion=%0A", "a=" + "b" * 8000,
                       "redistributed=%D9%A1", "status=" + "x" * 300])  # fmt: skip


def fill(path: str, rng: random.Random, t: Targets, authed: bool) -> str:
    """Hostile path parameters; with a valid key never an existing row."""
    real = [] if authed else [t.phone.replace("+", "%2B"), "1"]
    ids = ODD_DIGITS[:6] + TRAVERSAL + ["%00", "2147483648", "999999"] + real[1:]
    phones = ["%D9%A1" * 11, "%00", "138%FF", "+8613800138002", "0" * 11, *real[:1]]
    out = path
    for name in re.findall(r"\{(\w+)\}", path):
        choices = phones if name == "phone" else ids if "id" in name else ["%00", "%FF", "a" * 300]
        out = out.replace("{" + name + "}", rng.choice(choices + TRAVERSAL))
    return out


def build_requests(t: Targets, n: int, seed: int, *, authed: bool = False) -> list[tuple]:
    """At least `n` (kind, method, path-and-query, headers, body, route); kind "http" or
    "raw" (headers: one raw header line), route the path template aimed at."""
    rng = random.Random(seed)
    forms, xmls = form_bodies(), xml_bodies()
    signed_in = ("key", "token", "cookie") if t.cookie else ("key", "token")
    routes = [r for r in t.routes if not authed or r[2] in signed_in]
    routes += [] if authed else [(rng.choice(["GET", "POST"]), p, "none") for p in UNKNOWN]
    out: list[tuple] = []
    while len(out) < n:
        for method, template, auth in routes:
            path = fill(template, rng, t, authed)
            query = query_for(auth, rng, t)
            headers = headers_for(auth, rng, t, authed)
            body, ctype = b"", None
            if auth == "wechat":
                query, body = wechat_request(rng, t) if method == "POST" else (query, b"")
                query = query or f"signature=0&timestamp={int(time.time())}&nonce=n&echostr=e"
                ctype = "text/xml"
            elif method in ("POST", "DELETE", "PUT"):
                pick = rng.random()
                if auth == "push":
                    body, ctype = aliyun_body(rng, t), "application/json"
                elif auth == "twilio":
                    body, signature = twilio_request(rng, t, path)
                    headers |= signature
                    ctype = "application/x-www-form-urlencoded"
                elif auth in ("form", "cookie") or pick < 0.2:
                    body, ctype = rng.choice(forms), "application/x-www-form-urlencoded"
                    if authed and auth == "cookie":  # the right token only where no row is named
                        csrf = t.csrf if "{" in template else rng.choice(["", "x", t.csrf[:-1]])
                        body += b"&csrf_token=" + csrf.encode()
                elif pick < 0.3:
                    body, ctype = rng.choice(xmls), "text/xml"
                else:
                    body, ctype = json_body(rng, t), "application/json"
            if ctype:
                headers["Content-Type"] = rng.choice([ctype] * 6 + CONTENT_TYPES)
            target = path + ("?" + query if query else "")
            out.append(("http", method, target, headers, body, template))
            if rng.random() < 0.25:  # with bytes aiohttp will not send, or huge headers
                raw_path = rng.choice([target.encode(), path.encode() + b"/\xff", b"/api/\xd9\xa1"])
                header = rng.choice(RAW_HEADERS)
                if authed:
                    name = "Authorization" if "Authorization" in headers else "Cookie"
                    header = f"{name}: {headers[name]}\r\n".encode() + header
                out.append(("raw", method, raw_path, header, body, template))
    return out
