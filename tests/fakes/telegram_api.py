"""A fake Telegram Bot API server that checks every request against the Bot API spec.

Usage::

    async with FakeTelegram() as fake:
        app = (ApplicationBuilder().token(fake.token).base_url(fake.base_url)
               .base_file_url(fake.base_file_url).build())
        fake.send_text("/seq 4 16:9 a fox")            # pushes an update for getUpdates
        await fake.wait_for(lambda: fake.calls_to("sendMediaGroup"))
        assert not fake.errors                          # spec / limit violations land here

The server is a real aiohttp server on 127.0.0.1 (random port) running on the test's event
loop. Calls are recorded in ``fake.calls``; sent messages in ``fake.messages``. Uploaded files
given directly as a field (e.g. ``photo``) appear in ``Call.params`` as ``"attach://<field>"``.

For load tests, ``FakeTelegram(keep_file_bytes=False)`` keeps only the size and SHA-256 of uploads
(``file_meta``) instead of their bytes (``files``, ``Call.files`` stay empty).
Every call also carries its wall-clock time (``Call.wall``) next to the monotonic ``Call.at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

JsonDict = dict[str, Any]
Key = tuple[int, int]
SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "telegram-api.json"
DEFAULT_TOKEN = "7012345678:fake-default-token-00000"
ADA_ID = 123456789
ADA: JsonDict = {"id": ADA_ID, "is_bot": False, "first_name": "Ada", "last_name": "Lovelace"}
ADA.update(username="ada_l", language_code="en")
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
MESSAGE_KEYS = ("message", "edited_message", "channel_post", "edited_channel_post")
MEMBER_TYPES = {"creator": "ChatMemberOwner", "administrator": "ChatMemberAdministrator",
                "member": "ChatMemberMember", "restricted": "ChatMemberRestricted",
                "left": "ChatMemberLeft", "kicked": "ChatMemberBanned"}  # fmt: skip
_PRIMITIVES: dict[str, Any] = {"Boolean": False, "Integer": 0, "Float": 0.0, "String": ""}
_DISCRIMINATOR = re.compile(r'(?:must be|always) "?([A-Za-z_]+)"?')


def utf16_len(s: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(s.encode("utf-16-le")) // 2


@cache
def load_spec(path: Path = SPEC_PATH) -> JsonDict:
    return json.loads(path.read_text(encoding="utf-8"))


class ApiError(Exception):
    """An error answer; ``details`` (if any) are appended to ``fake.errors``."""

    def __init__(self, status: int, description: str, details: list[str] | None = None,
                 retry_after: int | None = None) -> None:  # fmt: skip
        super().__init__(description)
        self.status, self.description, self.details = status, description, details or []
        self.retry_after = retry_after


@dataclass
class Call:
    method: str
    params: JsonDict
    files: dict[str, bytes]
    status: int
    response: JsonDict
    at: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)  # the same moment, as wall-clock time


@dataclass
class _Fault:
    kind: str  # "error" | "server" | "delay" | "lost" | "album" | "drop" | "raw"
    method: str
    times: int = 1
    status: int = 400
    description: str = ""
    retry_after: int | None = None
    chat_id: int | str | None = None
    seconds: float = 0.0
    delivered_before: int = 0
    skip: int = 0  # matching calls to let through before the fault applies
    body: str = ""  # "raw": the exact answer body
    file_id: str | None = None  # getFile: only for this file


@dataclass
class _Req:
    """What a method handler gets: decoded params, uploaded bytes and multipart parts."""

    p: JsonDict
    files: dict[str, bytes]
    uploads: dict[str, Any]
    fault: _Fault | None


class SpecChecker:
    """Checks method parameters and nested objects against api.json (unknown/missing fields)."""

    def __init__(self, spec: JsonDict) -> None:
        self.methods: dict[str, JsonDict] = {k.lower(): v for k, v in spec["methods"].items()}
        self.types: dict[str, JsonDict] = spec["types"]

    def field_types(self, method: str, name: str) -> list[str]:
        fields = self.methods.get(method.lower(), {}).get("fields", [])
        return next((list(f["types"]) for f in fields if f["name"] == name), [])

    def check_params(self, method: str, params: JsonDict) -> list[tuple[str, str]]:
        """Returns (Telegram description, human-readable line) per problem."""
        fields = {f["name"]: f for f in self.methods[method.lower()].get("fields", [])}
        out = [(f'Bad Request: unknown parameter "{k}"', f"unknown field '{k}'")
               for k in params if k not in fields]  # fmt: skip
        out += [(f'Bad Request: parameter "{n}" is required', f"missing required field '{n}'")
                for n, f in fields.items() if f["required"] and n not in params]  # fmt: skip
        for k, v in params.items():
            if k in fields:
                errs = self.check_value(v, fields[k]["types"], k)
                out += [(f"Bad Request: can't parse {k}: {e}", e) for e in errs]
        return out

    def check_value(self, value: Any, types: list[str], path: str) -> list[str]:
        if isinstance(value, list):
            inner = [t.removeprefix("Array of ") for t in types if t.startswith("Array of ")]
            nested = [self.check_value(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
            return [e for errs in nested for e in errs]
        cands = [c for t in types for c in self._expand(t)] if isinstance(value, dict) else []
        if not cands:
            return []
        matching = [c for c in cands if self._discriminates(c, value)] or cands
        return min((self._check_fields(value, c, path) for c in matching), key=len)

    def _expand(self, name: str) -> list[str]:
        t = self.types.get(name, {})
        if t.get("subtypes"):
            return [s for sub in t["subtypes"] for s in self._expand(sub)]
        return [name] if "fields" in t else []

    def _discriminates(self, type_name: str, value: JsonDict) -> bool:
        for f in self.types[type_name]["fields"]:
            m = _DISCRIMINATOR.search(f["description"])
            if f["name"] in ("type", "status", "source") and f["required"] and m:
                return value.get(f["name"]) == m.group(1)
        return True

    def _check_fields(self, obj: JsonDict, type_name: str, path: str) -> list[str]:
        fields = {f["name"]: f for f in self.types[type_name]["fields"]}
        errs = [f"{path}: unknown field '{k}' for {type_name}" for k in obj if k not in fields]
        errs += [f"{path}: missing required field '{n}' for {type_name}"
                 for n, f in fields.items() if f["required"] and n not in obj]  # fmt: skip
        for k, v in obj.items():
            if k in fields:
                errs += self.check_value(v, fields[k]["types"], f"{path}.{k}")
        return errs

    def fill(self, type_name: str, base: JsonDict, depth: int = 0) -> JsonDict:
        """``base`` plus a default for every required field it lacks."""
        out = dict(base)
        for f in self.types[type_name].get("fields", []):
            t, name = f["types"][0], f["name"]
            if not f["required"] or name in out:
                continue
            if t.startswith("Array of"):
                out[name] = []
            elif t in _PRIMITIVES:
                out[name] = _PRIMITIVES[t]
            else:
                sub = self._expand(t)
                out[name] = self.fill(sub[0], {}, depth + 1) if sub and depth < 3 else {}
        return out


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:
        return None


def _markup(m: Any) -> Any:
    """Normalise a reply markup for comparison: no keyboard == empty inline keyboard."""
    return None if not m or (isinstance(m, dict) and m.get("inline_keyboard") == []) else m


class FakeTelegram:
    def __init__(self, token: str = DEFAULT_TOKEN, *, bot_id: int = 7012345678,
                 bot_username: str = "SeqImageBot", spec_path: Path = SPEC_PATH,
                 keep_file_bytes: bool = True) -> None:  # fmt: skip
        self.token = token
        self.keep_file_bytes = keep_file_bytes  # False: uploads leave only size and hash behind
        self.spec = SpecChecker(load_spec(spec_path))
        self.bot_user: JsonDict = {"id": bot_id, "is_bot": True, "first_name": "Seq Images"}
        self.bot_user["username"] = bot_username
        self.me: JsonDict = {**self.bot_user, "can_join_groups": True, "has_main_web_app": False}
        self.me.update(can_read_all_group_messages=False, supports_inline_queries=False,
                       can_connect_to_business=False)  # fmt: skip
        self.calls: list[Call] = []
        self.errors: list[str] = []
        self.messages: dict[Key, JsonDict] = {}
        self.history: dict[Key, list[str]] = {}
        self.deleted: set[Key] = set()
        self.delivered_media: list[JsonDict] = []
        self.callback_answers: dict[str, JsonDict] = {}
        self.commands: list[JsonDict] = []
        self.webhook: JsonDict = {}  # the last setWebhook parameters
        self.menu_buttons: dict[int | None, JsonDict] = {}  # setChatMenuButton: chat (None: all)
        self.chats: dict[int, JsonDict] = {}
        self.users: dict[int, JsonDict] = {ADA_ID: dict(ADA)}
        self.files: dict[str, bytes] = {}  # file_id -> bytes of uploads (if keep_file_bytes)
        self.file_meta: dict[str, tuple[int, str]] = {}  # file_id -> (size, sha256) of uploads
        self.blocked: set[int] = set()
        self.file_paths: dict[str, str] = {}  # getFile's file_path -> file_id
        self.downloads: list[tuple[str, int]] = []  # (file_path, status) of each file download
        self.updates: list[JsonDict] = []  # pending (unconfirmed) updates
        self.polls_received = 0  # getUpdates requests, counted as they arrive (calls: as they end)
        self.base_url = self.base_file_url = ""
        self._next_update_id = 815196407
        self._next_mid: dict[int, int] = defaultdict(int)
        self._open_queries: set[str] = set()
        self._counter = 0
        self._members: dict[Key, str] = {}
        self._faults: list[_Fault] = []
        self._update_event = asyncio.Event()
        self._call_event = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._closing = False
        self.invoices: list[JsonDict] = []  # sendInvoice calls accepted (Telegram Stars)
        self.checkout_answers: dict[str, JsonDict] = {}  # pre_checkout_query id -> the answer
        self.charges: dict[str, JsonDict] = {}  # telegram_payment_charge_id -> the payment
        self.refunds: list[str] = []  # charge ids refunded by refundStarPayment
        self._stopping = asyncio.Event()  # set by stop(): ends delays at once
        self.wrong_token_status = 401  # Telegram: 401 for an unknown token, 404 for a malformed one
        self.private_flood: tuple[float, float] | None = None  # (burst, per second): see flood_...
        self._flood_levels: dict[int, tuple[float, float]] = {}  # chat -> (level, at)

    async def start(self, port: int = 0) -> FakeTelegram:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/bot"
        self.base_file_url = f"http://127.0.0.1:{port}/file/bot"
        return self

    async def stop(self) -> None:
        self._closing = True
        self._stopping.set()
        self._wake("_update_event")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _canonical(self, method: str) -> str:
        if method.lower() not in self.spec.methods:
            raise ValueError(f"unknown Bot API method {method!r}")
        return str(self.spec.methods[method.lower()]["name"])

    def fail_next(self, method: str, *, status: int = 400,
                  description: str = "Bad Request: injected failure", retry_after: int | None = None,
                  times: int = 1, chat_id: int | str | None = None, skip: int = 0) -> None:  # fmt: skip
        """Answer the next ``times`` calls of ``method`` (to ``chat_id``) with this error,
        after letting ``skip`` matching calls through."""
        m = self._canonical(method)
        fault = _Fault("error", m, times, status, description, retry_after, chat_id)
        fault.skip = skip
        self._faults.append(fault)

    def rate_limit_next(self, method: str, retry_after: int = 1, times: int = 1,
                        chat_id: int | str | None = None, skip: int = 0) -> None:  # fmt: skip
        desc = f"Too Many Requests: retry after {retry_after}"
        self.fail_next(method, status=429, description=desc, retry_after=retry_after,
                       times=times, chat_id=chat_id, skip=skip)  # fmt: skip

    def album_retry_after_next(self, retry_after: int = 1, delivered_before: int = 0) -> None:
        """Next sendMediaGroup fails at item ``delivered_before + 1`` after delivering the rest."""
        fault = _Fault("album", "sendMediaGroup", retry_after=retry_after)
        fault.delivered_before = delivered_before
        self._faults.append(fault)

    def flood_private_chats(self, burst: float, per_second: float) -> None:
        """Telegram's per-chat flood control in private chats: each chat may get ``burst``
        messages (sent, edited, copied, forwarded) at once, then ``per_second``; any more are
        answered 429 with the whole seconds until one more would pass."""
        self.private_flood = (burst, per_second)

    def _flood_check(self, method: str, params: JsonDict) -> None:
        if self.private_flood is None or method == "sendChatAction":
            return
        if not method.startswith(("send", "edit", "copy", "forward")):
            return
        chat = params.get("chat_id")
        if not isinstance(chat, int) or chat <= 0:
            return
        burst, rate = self.private_flood
        now = time.monotonic()
        level, at = self._flood_levels.get(chat, (0.0, now))
        level = max(0.0, level - (now - at) * rate)
        if level + 1 > burst + 1e-9:
            wait = max(1, int(-(-(level + 1 - burst) // rate)))
            self._flood_levels[chat] = (level, now)
            raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        self._flood_levels[chat] = (level + 1, now)

    def fail_server_next(self, method: str, times: int = 1, status: int = 502,
                         skip: int = 0) -> None:  # fmt: skip
        """Answer the next ``times`` calls of ``method`` with an HTML error page (a proxy's 5xx),
        after letting ``skip`` through."""
        fault = _Fault("server", self._canonical(method), times, status)
        fault.skip = skip
        self._faults.append(fault)

    def drop_next(self, method: str, times: int = 1) -> None:
        """Close the connection of the next ``times`` calls of ``method`` without an answer (a
        network error for the client; nothing takes effect)."""
        self._faults.append(_Fault("drop", self._canonical(method), times))

    def recover(self) -> None:
        """Forget every fault not met yet: Telegram is back."""
        self._faults.clear()

    def answer_raw_next(self, method: str, body: str | JsonDict, *, status: int = 200,
                        times: int = 1) -> None:  # fmt: skip
        """Answer the next ``times`` calls of ``method`` with exactly this body (a dict: as JSON),
        without acting on them: a proxy's page, a malformed answer."""
        text = body if isinstance(body, str) else json.dumps(body)
        fault = _Fault("raw", self._canonical(method), times, status)
        fault.body = text
        self._faults.append(fault)

    def delay_next(self, method: str, seconds: float, times: int = 1,
                   file_id: str | None = None) -> None:  # fmt: skip
        """Sleep before handling (the call still takes effect, like a slow real server);
        ``file_id``: only calls about that file (getFile)."""
        fault = _Fault("delay", self._canonical(method), times, seconds=seconds, file_id=file_id)
        self._faults.append(fault)

    def lose_answer_next(self, method: str, seconds: float, times: int = 1) -> None:
        """Handle the call at once (it takes effect), then hold the answer ``seconds``: a client
        with a shorter timeout never learns that it worked."""
        self._faults.append(_Fault("lost", self._canonical(method), times, seconds=seconds))

    def block_chat(self, chat_id: int) -> None:
        self.blocked.add(chat_id)

    def set_member_status(self, chat_id: int, user_id: int, status: str) -> None:
        self._members[(chat_id, user_id)] = status

    def user_delete_message(self, chat_id: int, message_id: int) -> None:
        self.deleted.add((chat_id, message_id))

    def calls_to(self, method: str, *, ok_only: bool = False) -> list[Call]:
        m = method.lower()
        return [c for c in self.calls if c.method.lower() == m and (c.status == 200 or not ok_only)]

    def buttons(self, chat_id: int, message_id: int) -> list[tuple[str, str]]:
        kb = (self.messages[(chat_id, message_id)].get("reply_markup") or {}).get("inline_keyboard")
        return [(b["text"], b.get("callback_data", "")) for row in kb or [] for b in row]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:  # noqa: ASYNC109
        """Re-check ``predicate`` after each call and every 50 ms; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            event = self._call_event
            if value := predicate():
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                lines = [f"  {c.method} -> {c.status} {json.dumps(c.params, default=str)[:160]}"
                         for c in self.calls[-20:]]  # fmt: skip
                summary = "\n".join(lines)
                raise AssertionError(f"wait_for timed out after {timeout}s; last calls:\n"
                                     f"{summary}\nerrors: {self.errors}")  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(0.05, remaining))

    def _wake(self, name: str) -> None:
        getattr(self, name).set()
        setattr(self, name, asyncio.Event())

    def _chat(self, chat_id: int, chat_type: str | None = None) -> JsonDict:
        if chat_id not in self.chats:
            chat: JsonDict = {"id": chat_id, "title": "Group", "type": chat_type or "supergroup"}
            if chat_id > 0:
                u = self.users.get(chat_id) or {"first_name": f"User {chat_id}"}
                chat = {"id": chat_id, "first_name": u["first_name"]}
                chat.update({k: u[k] for k in ("last_name", "username") if k in u})
                chat["type"] = "private"
            self.chats[chat_id] = chat
        return self.chats[chat_id]

    def _user(self, user_id: int) -> JsonDict:
        user = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
        return self.users.setdefault(user_id, user)

    def _alloc_mid(self, chat_id: int) -> int:
        self._next_mid[chat_id] += 1
        return self._next_mid[chat_id]

    def _reply_copy(self, chat_id: int, message_id: int) -> JsonDict:
        stored = self.messages.get((chat_id, message_id))
        if stored is None:
            return {"message_id": message_id, "chat": self._chat(chat_id), "date": int(time.time())}
        return {k: v for k, v in stored.items() if k != "reply_to_message"}

    def send_text(self, text: str, *, chat_id: int = ADA_ID, user_id: int | None = None,
                  chat_type: str | None = None, message_thread_id: int | None = None,
                  reply_to_message_id: int | None = None, sender_chat: JsonDict | None = None,
                  from_user: JsonDict | None = None, edited: bool = False,
                  message_id: int | None = None, push: bool = True,
                  content: JsonDict | None = None) -> JsonDict:  # fmt: skip
        """A user's text message (or channel post) update; commands get a bot_command entity."""
        chat = self._chat(chat_id, chat_type)
        chat["type"] = chat_type or chat["type"]
        if message_thread_id is not None:
            chat["is_forum"] = True
        msg: JsonDict = {"message_id": message_id or self._alloc_mid(chat_id)}
        if chat["type"] != "channel":
            uid = user_id or (chat_id if chat["type"] == "private" else ADA_ID)
            msg["from"] = dict(from_user or self._user(uid))
        if sender_chat is not None or chat["type"] == "channel":
            msg["sender_chat"] = dict(sender_chat or chat)
        msg.update(chat=dict(chat), date=int(time.time()))
        if edited:
            msg["edit_date"] = msg["date"]
        if message_thread_id is not None:
            msg.update(message_thread_id=message_thread_id, is_topic_message=True)
        if reply_to_message_id is not None:
            msg["reply_to_message"] = self._reply_copy(chat_id, reply_to_message_id)
        msg.update(content or {})
        key = "caption" if content else "text"
        msg[key] = text
        if text.startswith("/"):
            length = utf16_len(text.split()[0])
            entity = [{"offset": 0, "length": length, "type": "bot_command"}]
            msg["caption_entities" if content else "entities"] = entity
        if not text and content:
            del msg["caption"]
        kind = "channel_post" if chat["type"] == "channel" else "message"
        return self._emit({("edited_" if edited else "") + kind: msg}, push)

    # ---- files a user sends: photos, image documents, albums; getFile and downloads ----------

    def user_file(self, data: bytes, *, size: int | None = None) -> tuple[str, str]:
        """Keep ``data`` as a file a user sent; returns (file_id, file_unique_id). ``size``:
        what Telegram says the file weighs (over 20 MB: getFile refuses it)."""
        self._counter += 1
        sha = hashlib.sha256(data).hexdigest()
        fid = f"AgACAgUAAxkBAAU{self._counter:08d}{sha[:16]}"
        self.files[fid] = data
        self.file_meta[fid] = (len(data) if size is None else size, sha)
        return fid, f"AQAE{sha[:12]}"

    def send_photo(self, image: bytes, caption: str = "", *, media_group_id: str | None = None,
                   size: int | None = None, **kwargs: Any) -> JsonDict:  # fmt: skip
        """A user's photo (Telegram's sizes: a thumbnail, then the full one), maybe captioned,
        maybe one item of an album; ``kwargs`` as for :meth:`send_text`."""
        fid, uid = self.user_file(image, size=size)
        w, h = _image_size(image) or (1280, 960)
        f = 90 / max(w, h)
        thumb = {"file_id": f"{fid}_t", "file_unique_id": f"{uid}_t", "file_size": 1500,
                 "width": max(1, round(w * f)), "height": max(1, round(h * f))}  # fmt: skip
        full = {"file_id": fid, "file_unique_id": uid, "file_size": self.file_meta[fid][0]}
        full.update(width=w, height=h)
        content: JsonDict = {"photo": [thumb, full]}
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        return self.send_text(caption, content=content, **kwargs)

    def send_document(self, data: bytes, caption: str = "", *, mime_type: str = "image/png",
                      file_name: str = "picture.png", size: int | None = None,
                      media_group_id: str | None = None, **kwargs: Any) -> JsonDict:  # fmt: skip
        """A file a user sent (an image "as a file" by default), maybe captioned."""
        fid, uid = self.user_file(data, size=size)
        doc = {"file_id": fid, "file_unique_id": uid, "file_size": self.file_meta[fid][0]}
        doc.update(file_name=file_name, mime_type=mime_type)
        content: JsonDict = {"document": doc}
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        return self.send_text(caption, content=content, **kwargs)

    def send_album(self, images: list[bytes], caption: str = "", *, caption_on: int = 0,
                   **kwargs: Any) -> list[JsonDict]:  # fmt: skip
        """An album: one photo update per image, one media_group_id, the caption on one item."""
        self._counter += 1
        group = str(13000000000000000 + self._counter)
        return [
            self.send_photo(
                image, caption if i == caption_on else "", media_group_id=group, **kwargs
            )
            for i, image in enumerate(images)
        ]

    async def _m_getFile(self, r: _Req) -> JsonDict:
        fid = str(r.p["file_id"])
        if fid not in self.file_meta:
            raise ApiError(400, "Bad Request: invalid file_id")
        size, _ = self.file_meta[fid]
        if size > 20 * 1024 * 1024:
            raise ApiError(400, "Bad Request: file is too big")
        path = f"photos/file_{len(self.file_paths)}.jpg"
        self.file_paths[path] = fid
        answer: JsonDict = {"file_id": fid, "file_unique_id": f"AQAE{fid[-12:]}"}
        answer.update(file_size=size, file_path=path)
        return answer

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """A file download, as at ``https://api.telegram.org/file/bot<token>/<file_path>``."""
        path = request.match_info["path"]
        fid = self.file_paths.get(path)
        ok = request.match_info["token"] == self.token and fid is not None and fid in self.files
        self.downloads.append((path, 200 if ok else 404))
        self._wake("_call_event")
        if not ok or fid is None:
            return web.json_response({"ok": False, "error_code": 404,
                                      "description": "Not Found"}, status=404)  # fmt: skip
        return web.Response(body=self.files[fid], content_type="application/octet-stream")

    def press_button(self, message: JsonDict | Key, data: str, *, user_id: int = ADA_ID,
                     from_user: JsonDict | None = None, push: bool = True) -> JsonDict:  # fmt: skip
        """A callback_query update for a button press on a stored message."""
        if isinstance(message, dict):
            message = (message["chat"]["id"], message["message_id"])
        stored = self.messages[message]
        return self._callback(dict(stored), data, from_user or self._user(user_id), push)

    def _callback(self, msg: JsonDict, data: str, user: JsonDict, push: bool) -> JsonDict:
        self._counter += 1
        query = {"id": str(4278655576057498272 + self._counter), "from": dict(user)}
        query.update(message=msg, chat_instance=str(-2291384178539442901 - msg["chat"]["id"]))
        query["data"] = data
        return self._emit({"callback_query": query}, push)

    def _emit(self, update: JsonDict, push: bool) -> JsonDict:
        update = {"update_id": None, **update}
        self.push_update(update) if push else self._accept(update)
        return update

    def push_update(self, update: JsonDict) -> int:
        """Queue a raw update. Its update_id is kept if higher than every earlier one."""
        uid = self._accept(update)
        self.updates.append(update)
        self._wake("_update_event")
        return uid

    def _accept(self, update: JsonDict) -> int:
        uid = update.get("update_id")
        if not isinstance(uid, int) or uid < self._next_update_id:
            update["update_id"] = uid = self._next_update_id
        self._next_update_id = uid + 1
        query = update.get("callback_query")
        if isinstance(query, dict) and "id" in query:
            self._open_queries.add(str(query["id"]))
        for key in MESSAGE_KEYS:
            if isinstance(update.get(key), dict):
                self._register_message(update[key])
        return uid

    def _register_message(self, msg: JsonDict) -> None:
        chat, mid = msg.get("chat"), msg.get("message_id")
        if not isinstance(chat, dict) or not isinstance(mid, int):
            return
        cid = int(chat["id"])
        self.chats.setdefault(cid, dict(chat))
        if isinstance(msg.get("from"), dict):
            self.users.setdefault(msg["from"]["id"], dict(msg["from"]))
        self.messages[(cid, mid)] = msg
        self.history.setdefault((cid, mid), []).append(msg.get("text") or msg.get("caption") or "")
        self._next_mid[cid] = max(self._next_mid[cid], mid)

    async def _read(self, request: web.Request, method: str) -> tuple[JsonDict, dict[str, Any]]:
        raw: dict[str, str] = dict(request.query)
        params: JsonDict = {}
        uploads: dict[str, Any] = {}
        if request.content_type == "application/json" and request.can_read_body:
            body = await request.json()
            params.update(body if isinstance(body, dict) else {})
        elif request.can_read_body:
            for k, v in (await request.post()).items():
                if isinstance(v, web.FileField):
                    uploads[k] = v
                else:
                    raw[k] = str(v)
        for k, v in raw.items():
            types = set(self.spec.field_types(method, k))
            params[k] = v
            if not types or not types <= {"String", "InputFile"}:
                with contextlib.suppress(ValueError):
                    params[k] = json.loads(v)
        params.update({k: f"attach://{k}" for k in uploads if self.spec.field_types(method, k)})
        return params, uploads

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["method"]
        params, uploads = await self._read(request, name)
        files = {k: v.file.read() for k, v in uploads.items()}
        spec = self.spec.methods.get(name.lower())
        method = spec["name"] if spec else name
        fault = None
        try:
            if request.match_info["token"] != self.token:
                status = self.wrong_token_status
                raise ApiError(status, "Unauthorized" if status == 401 else "Not Found")
            if spec is None:
                raise ApiError(404, "Not Found: method not found")
            problems = self.spec.check_params(method, params) + self._limits(method, params)
            if problems:
                raise ApiError(400, problems[0][0], [p[1] for p in problems])
            fault = self._take_fault(method, params)
            if fault and fault.kind == "delay":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), fault.seconds)
            elif fault and fault.kind == "server":
                self._record(Call(method, params, files, fault.status, {}))
                html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
                return web.Response(status=fault.status, text=html, content_type="text/html")
            elif fault and fault.kind == "error":
                raise ApiError(fault.status, fault.description)
            elif fault and fault.kind == "raw":
                self._record(Call(method, params, files, fault.status, {"raw": fault.body}))
                kind = "application/json" if fault.body.startswith(("{", "[")) else "text/html"
                return web.Response(status=fault.status, text=fault.body, content_type=kind)
            elif fault and fault.kind == "drop":
                self._record(Call(method, params, files, 0, {}))
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=502)  # never reaches the client
            self._flood_check(method, params)
            self._check_blocked(method, params)
            handler = getattr(self, f"_m_{method}", None)
            result = await handler(_Req(params, files, uploads, fault)) if handler else True
            status, body = 200, {"ok": True, "result": result}
            if fault and fault.kind == "lost":
                self._record(Call(method, params, files, status, body))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), fault.seconds)
                return web.json_response(body, status=status)
        except ApiError as e:
            status = e.status
            body = {"ok": False, "error_code": e.status, "description": e.description}
            if fault and fault.kind == "error" and fault.retry_after is not None:
                body["parameters"] = {"retry_after": fault.retry_after}
            if e.retry_after is not None:
                body["parameters"] = {"retry_after": e.retry_after}
            self.errors += [f"{method}: {d}" for d in e.details]
        self._record(Call(method, params, files, status, body))
        return web.json_response(body, status=status)

    def _record(self, call: Call) -> None:
        if not self.keep_file_bytes:
            call.files = {}
        self.calls.append(call)
        self._wake("_call_event")

    def _take_fault(self, method: str, params: JsonDict) -> _Fault | None:
        for f in self._faults:
            chat = params.get("chat_id")
            if (
                f.method == method
                and (f.chat_id is None or str(f.chat_id) == str(chat))
                and (f.file_id is None or params.get("file_id") == f.file_id)
            ):
                if f.skip > 0:
                    f.skip -= 1
                    return None
                f.times -= 1
                if f.times <= 0:
                    self._faults.remove(f)
                return f
        return None

    def _check_blocked(self, method: str, params: JsonDict) -> None:
        if not method.startswith(("send", "edit", "copy", "forward")) or "chat_id" not in params:
            return
        cid = self._chat_id(params)
        kind = self._chat(cid)["type"]
        if cid in self.blocked:
            why = "blocked by the user" if kind == "private" else f"kicked from the {kind} chat"
            raise ApiError(403, f"Forbidden: bot was {why}")

    def _chat_id(self, params: JsonDict) -> int:
        raw = params.get("chat_id")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str) and raw.lstrip("-").isdigit():
            return int(raw)
        for cid, chat in self.chats.items():
            if isinstance(raw, str) and chat.get("username") == raw.lstrip("@"):
                return cid
        raise ApiError(400, "Bad Request: chat not found")

    def _limits(self, method: str, p: JsonDict) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []

        def text_limit(value: Any, what: str, hi: int, too_long: str, lo: int = 0) -> None:
            if isinstance(value, str) and not lo <= utf16_len(value) <= hi:
                desc = f"Bad Request: {what} is empty" if lo and not value else too_long
                out.append(
                    (desc, f"{what} has {utf16_len(value)} UTF-16 units (allowed {lo}-{hi})")
                )

        if method in ("sendMessage", "editMessageText"):
            text_limit(p.get("text"), "message text", 4096, "Bad Request: message is too long", 1)
        text_limit(p.get("caption"), "caption", 1024, CAPTION_TOO_LONG)
        media = p.get("media")
        items = media if isinstance(media, list) else [media]
        for i, item in enumerate(items):
            if isinstance(item, dict):
                text_limit(item.get("caption"), f"media[{i}] caption", 1024, CAPTION_TOO_LONG)
        if method == "sendMediaGroup" and isinstance(media, list):
            if not 2 <= len(media) <= 10:
                few = "there must be at least 2 media in an album"
                desc = "too much messages to send as an album" if len(media) > 10 else few
                out.append((f"Bad Request: {desc}", f"media has {len(media)} items (allowed 2-10)"))
            kinds = sorted({str(i.get("type")) for i in media if isinstance(i, dict)})
            if len(kinds) > 1 and not set(kinds) <= {"photo", "video"}:
                desc = "Bad Request: documents and audio files can't be mixed with other media"
                out.append((desc, f"album mixes media types {kinds}"))
        markup = p.get("reply_markup")
        rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
        for r, row in enumerate(rows if isinstance(rows, list) else []):
            for c, b in enumerate(row if isinstance(row, list) else []):
                data = b.get("callback_data") if isinstance(b, dict) else None
                if isinstance(data, str) and not 1 <= len(data.encode()) <= 64:
                    size = len(data.encode())
                    line = f"button [{r}][{c}] callback_data is {size} bytes (allowed 1-64)"
                    out.append(("Bad Request: BUTTON_DATA_INVALID", line))
                web_app = b.get("web_app") if isinstance(b, dict) else None
                if isinstance(web_app, dict):
                    # Telegram: web_app buttons only in private chats, and only https pages.
                    raw = p.get("chat_id")
                    chat = self._chat(raw) if isinstance(raw, int) else {}
                    if chat.get("type", "private") != "private":
                        line = f"button [{r}][{c}] is a web_app button in a {chat.get('type')}"
                        out.append(("Bad Request: BUTTON_TYPE_INVALID", line))
                    if not str(web_app.get("url", "")).startswith("https://"):
                        line = f"button [{r}][{c}] web_app url is not https"
                        out.append(("Bad Request: BUTTON_URL_INVALID", line))
        if method == "answerCallbackQuery":
            text_limit(p.get("text"), "callback answer text", 200, "Bad Request: MESSAGE_TOO_LONG")
        commands = p.get("commands") if method == "setMyCommands" else None
        for i, cmd in enumerate(commands if isinstance(commands, list) else []):
            name, desc = cmd.get("command", ""), cmd.get("description", "")
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(name)):
                line = f"command {name!r} is not 1-32 chars of [a-z0-9_]"
                out.append(("Bad Request: BOT_COMMAND_INVALID", line))
            too_long = "Bad Request: command description is too long"
            text_limit(desc, f"commands[{i}] description", 256, too_long, 1)
        return out

    async def _m_getMe(self, r: _Req) -> JsonDict:
        return dict(self.me)

    async def _m_getUpdates(self, r: _Req) -> list[JsonDict]:
        self.polls_received += 1
        self._wake("_call_event")  # a long poll is under way: wait_for may look now
        offset, limit = r.p.get("offset"), int(r.p.get("limit") or 100)
        allowed = r.p.get("allowed_updates") or None
        deadline = time.monotonic() + min(float(r.p.get("timeout") or 0), 1.0)
        while True:
            event = self._update_event
            if isinstance(offset, int) and offset > 0:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            found = [u for u in self.updates if not allowed or set(u) & set(allowed)]
            if isinstance(offset, int) and offset < 0:
                found = found[offset:]
            remaining = deadline - time.monotonic()
            if found or remaining <= 0 or self._closing:
                return found[:limit]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def _m_setMyCommands(self, r: _Req) -> bool:
        self.commands = r.p["commands"]
        return True

    async def _m_setChatMenuButton(self, r: _Req) -> bool:
        button = r.p.get("menu_button") or {"type": "default"}
        if button.get("type") == "web_app":
            url = str((button.get("web_app") or {}).get("url", ""))
            if not url.startswith("https://"):
                raise ApiError(400, "Bad Request: URL must be HTTPS")
            if not 1 <= len(str(button.get("text", ""))) <= 64:
                raise ApiError(400, "Bad Request: menu button text is invalid")
        chat = r.p.get("chat_id")
        self.menu_buttons[int(chat) if chat is not None else None] = dict(button)
        return True

    async def _m_setWebhook(self, r: _Req) -> bool:
        self.webhook = dict(r.p)
        return True

    async def _m_deleteWebhook(self, r: _Req) -> bool:
        self.webhook = {}
        return True

    async def _m_getWebhookInfo(self, r: _Req) -> JsonDict:
        return {"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self.updates)}  # fmt: skip

    def _media(self, kind: str, ref: Any, r: _Req) -> tuple[JsonDict, bytes, str]:
        """(message content, raw bytes, sha256) for an attached upload or a file_id/URL string."""
        ref = str(ref)
        name = ref.removeprefix("attach://")
        if name != ref and name not in r.files:
            raise ApiError(400, f"Bad Request: file attachment {name!r} not found")
        data = r.files[name] if name != ref else self.files.get(ref, b"")
        sha = hashlib.sha256(data if name != ref else ref.encode()).hexdigest()
        self._counter += 1
        fid, uid = ref, f"AQAD{sha[:12]}"
        size = len(data) if name != ref else self.file_meta.get(ref, (len(data), ""))[0]
        if name != ref:
            fid = f"AgACAgIAAxkBAAI{self._counter:08d}{sha[:16]}"
            self.file_meta[fid] = (len(data), sha)
            if self.keep_file_bytes:
                self.files[fid] = data
        base = {"file_id": fid, "file_unique_id": uid, "file_size": size}
        if kind == "photo":
            w, h = _image_size(data) or (1280, 1280)
            sizes = [{**base, "width": w, "height": h}]
            if max(w, h) > 320:
                f = 320 / max(w, h)
                thumb: JsonDict = {"file_id": f"{fid}_s", "file_unique_id": f"{uid}_s"}
                thumb.update(file_size=len(data) // 10, width=round(w * f), height=round(h * f))
                sizes.insert(0, thumb)
            return {"photo": sizes}, data, sha
        if kind in ("document", "audio"):
            up = r.uploads.get(name) if name != ref else None
            if up is not None:
                base.update(file_name=up.filename, mime_type=up.content_type)
            return {kind: base}, data, sha
        w, h = _image_size(data) or (1280, 720)
        return {kind: {**base, "width": w, "height": h, "duration": 0}}, data, sha

    def _new_message(self, p: JsonDict, content: JsonDict, group: str | None = None) -> JsonDict:
        cid = self._chat_id(p)
        msg: JsonDict = {"message_id": self._alloc_mid(cid), "from": dict(self.bot_user)}
        msg.update(chat=dict(self._chat(cid)), date=int(time.time()))
        if p.get("message_thread_id") is not None:
            msg.update(message_thread_id=p["message_thread_id"], is_topic_message=True)
        reply = (p.get("reply_parameters") or {}).get("message_id") or p.get("reply_to_message_id")
        if reply:
            msg["reply_to_message"] = self._reply_copy(cid, int(reply))
        if group:
            msg["media_group_id"] = group
        msg.update(content)
        if _markup(p.get("reply_markup")) and "inline_keyboard" in p["reply_markup"]:
            msg["reply_markup"] = p["reply_markup"]
        self._register_message(msg)
        return msg

    def _deliver(self, r: _Req, kind: str, ref: Any, caption: Any, group: str | None = None,
                 ) -> JsonDict:  # fmt: skip
        content, data, sha = self._media(kind, ref, r)
        if caption:
            content["caption"] = caption
        msg = self._new_message(r.p, content, group)
        entry = {"chat_id": msg["chat"]["id"], "message_id": msg["message_id"], "kind": kind}
        entry.update(bytes=len(data), sha256=sha, caption=caption, media_group_id=group)
        entry["reply_to_message_id"] = msg.get("reply_to_message", {}).get("message_id")
        entry["message_thread_id"] = r.p.get("message_thread_id")
        self.delivered_media.append(entry)
        return msg

    async def _m_sendMessage(self, r: _Req) -> JsonDict:
        return self._new_message(r.p, {"text": r.p["text"]})

    async def _m_sendPhoto(self, r: _Req) -> JsonDict:
        return self._deliver(r, "photo", r.p["photo"], r.p.get("caption"))

    async def _m_sendDocument(self, r: _Req) -> JsonDict:
        return self._deliver(r, "document", r.p["document"], r.p.get("caption"))

    async def _m_sendMediaGroup(self, r: _Req) -> list[JsonDict]:
        for i, item in enumerate(r.p["media"], 1):
            if not isinstance(item, dict):
                raise ApiError(400, f"Bad Request: can't parse InputMedia #{i}: {item!r:.60}")
            ref = str(item.get("media"))
            if ref.startswith("attach://") and ref[9:] not in r.files:
                err = "Wrong file identifier/HTTP URL specified"
                raise ApiError(400, f'Bad Request: failed to send message #{i} with the error '
                                    f'message "{err}"')  # fmt: skip
        self._counter += 1
        group, out, fault = str(13911111111111111 + self._counter), [], r.fault
        for i, item in enumerate(r.p["media"]):
            if fault and fault.kind == "album" and i >= fault.delivered_before:
                err = f"Too Many Requests: retry after {fault.retry_after}"
                raise ApiError(400, f'Bad Request: failed to send message #{i + 1} with the error '
                                    f'message "{err}"')  # fmt: skip
            out.append(self._deliver(r, item["type"], item["media"], item.get("caption"), group))
        return out

    def _edit(self, p: JsonDict, field_name: str | None) -> JsonDict | bool:
        if "inline_message_id" in p:
            return True
        key = (self._chat_id(p), int(p.get("message_id", 0)))
        if key not in self.messages or key in self.deleted:
            raise ApiError(400, "Bad Request: message to edit not found")
        msg = self.messages[key]
        if field_name == "text" and "text" not in msg:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        new_value = p.get(field_name) if field_name else None
        same_text = field_name is None or msg.get(field_name) == new_value
        if same_text and _markup(msg.get("reply_markup")) == _markup(p.get("reply_markup")):
            raise ApiError(400, NOT_MODIFIED, [f"{NOT_MODIFIED} (message {key})"])
        if field_name:
            msg[field_name] = new_value
            self.history.setdefault(key, []).append(new_value or "")
        msg.pop("reply_markup", None)
        if _markup(p.get("reply_markup")):
            msg["reply_markup"] = p["reply_markup"]
        msg["edit_date"] = int(time.time())
        return msg

    async def _m_editMessageText(self, r: _Req) -> JsonDict | bool:
        return self._edit(r.p, "text")

    async def _m_editMessageCaption(self, r: _Req) -> JsonDict | bool:
        key = (self._chat_id(r.p), int(r.p.get("message_id", 0)))
        stored = self.messages.get(key)
        if stored is not None and not any(k in stored for k in ("photo", "document", "video")):
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        return self._edit(r.p, "caption")

    async def _m_editMessageReplyMarkup(self, r: _Req) -> JsonDict | bool:
        return self._edit(r.p, None)

    async def _m_deleteMessage(self, r: _Req) -> bool:
        key = (self._chat_id(r.p), int(r.p["message_id"]))
        if key not in self.messages or key in self.deleted:
            raise ApiError(400, "Bad Request: message to delete not found")
        self.deleted.add(key)
        return True

    async def _m_answerCallbackQuery(self, r: _Req) -> bool:
        qid = str(r.p["callback_query_id"])
        if qid not in self._open_queries:
            raise ApiError(400, QUERY_INVALID, [f"{QUERY_INVALID} (id {qid})"])
        self._open_queries.discard(qid)
        self.callback_answers[qid] = r.p
        return True

    def _member(self, chat_id: int, user_id: int) -> JsonDict:
        status = self._members.get((chat_id, user_id), "member")
        base: JsonDict = {"status": status, "user": dict(self._user(user_id))}
        type_name = MEMBER_TYPES.get(status, "ChatMemberMember")
        if status == "administrator":  # every required right granted, but not editable by the bot
            for f in self.spec.types[type_name]["fields"]:
                if f["required"] and f["name"].startswith("can_") and f["name"] != "can_be_edited":
                    base[f["name"]] = True
        if status == "restricted":
            base["is_member"] = True
        return self.spec.fill(type_name, base)

    async def _m_getChatMember(self, r: _Req) -> JsonDict:
        return self._member(self._chat_id(r.p), int(r.p["user_id"]))

    async def _m_getChatAdministrators(self, r: _Req) -> list[JsonDict]:
        cid = self._chat_id(r.p)
        roles = ("creator", "administrator")
        ids = [u for (c, u), s in self._members.items() if c == cid and s in roles]
        return [self._member(cid, u) for u in ids]

    def faults_pending(self, method: str) -> int:
        """How many injected faults for ``method`` no call has met yet (0: a delayed call arrived)."""
        m = self._canonical(method)
        return sum(f.times for f in self._faults if f.method == m)

    # ---- payments in Telegram Stars (sendInvoice, pre-checkout, successful_payment, refunds) ----

    async def _m_sendInvoice(self, r: _Req) -> JsonDict:
        p, bad = r.p, []
        if p.get("currency") != "XTR":
            bad.append(f"currency {p.get('currency')!r} is not XTR (digital goods: Stars only)")
        if p.get("provider_token"):
            bad.append("provider_token must be empty for payments in Telegram Stars")
        prices = p.get("prices")
        if not isinstance(prices, list) or len(prices) != 1:
            bad.append("prices must have exactly one item for payments in Telegram Stars")
        elif not isinstance(prices[0].get("amount"), int) or prices[0]["amount"] < 1:
            bad.append(f"price amount {prices[0].get('amount')!r} is not a positive whole number")
        for name, lo, hi in (("title", 1, 32), ("description", 1, 255)):
            if not lo <= len(str(p.get(name, ""))) <= hi:
                bad.append(f"{name} has {len(str(p.get(name, '')))} characters (allowed {lo}-{hi})")
        if not 1 <= len(str(p.get("payload", "")).encode()) <= 128:
            bad.append("payload must be 1-128 bytes")
        if bad:
            raise ApiError(400, "Bad Request: " + bad[0].upper().replace(" ", "_")[:40], bad)
        amount = prices[0]["amount"] if isinstance(prices, list) else 0
        invoice = {"title": p["title"], "description": p["description"], "start_parameter": "",
                   "currency": "XTR", "total_amount": amount}  # fmt: skip
        msg = self._new_message(p, {"invoice": invoice})
        self.invoices.append({**p, "message_id": msg["message_id"]})
        return msg

    def pre_checkout(self, payload: str, *, user_id: int = ADA_ID, total_amount: int = 0,
                     currency: str = "XTR", push: bool = True) -> JsonDict:  # fmt: skip
        """A pre_checkout_query update: the user pressed Pay on an invoice."""
        self._counter += 1
        query = {"id": str(5117437428115380000 + self._counter), "from": dict(self._user(user_id))}
        query.update(currency=currency, total_amount=total_amount, invoice_payload=payload)
        self._open_queries.add(query["id"])
        return self._emit({"pre_checkout_query": query}, push)

    async def _m_answerPreCheckoutQuery(self, r: _Req) -> bool:
        qid = str(r.p["pre_checkout_query_id"])
        if qid not in self._open_queries:
            raise ApiError(400, QUERY_INVALID, [f"{QUERY_INVALID} (pre-checkout {qid})"])
        if not r.p.get("ok") and not r.p.get("error_message"):
            need = ["ok=false needs error_message"]
            raise ApiError(400, "Bad Request: error_message is required", need)
        self._open_queries.discard(qid)
        self.checkout_answers[qid] = r.p
        return True

    def pay(self, payload: str, total_amount: int, *, user_id: int = ADA_ID,
            charge_id: str | None = None, push: bool = True) -> JsonDict:  # fmt: skip
        """A successful_payment service message in the buyer's private chat (a repeated
        ``charge_id`` is Telegram delivering the same payment again)."""
        self._counter += 1
        charge_id = charge_id or f"stxCharge{self._counter:06d}"
        payment = {"currency": "XTR", "total_amount": total_amount, "invoice_payload": payload,
                   "telegram_payment_charge_id": charge_id,
                   "provider_payment_charge_id": f"prov{self._counter}"}  # fmt: skip
        self.charges.setdefault(charge_id, {**payment, "user_id": user_id})
        chat = self._chat(user_id)
        msg: JsonDict = {"message_id": self._alloc_mid(user_id), "from": dict(self._user(user_id))}
        msg.update(chat=dict(chat), date=int(time.time()), successful_payment=payment)
        return self._emit({"message": msg}, push)

    def refunded(self, charge_id: str) -> JsonDict:
        """Telegram's ``refunded_payment`` service message in the buyer's private chat (it follows
        a refund, whoever made it)."""
        charge = self.charges[charge_id]
        user_id = int(charge["user_id"])
        refunded = {k: charge[k] for k in ("currency", "total_amount", "invoice_payload",
                                           "telegram_payment_charge_id",
                                           "provider_payment_charge_id")}  # fmt: skip
        msg: JsonDict = {"message_id": self._alloc_mid(user_id), "from": dict(self._user(user_id))}
        msg.update(chat=dict(self._chat(user_id)), date=int(time.time()), refunded_payment=refunded)
        return self._emit({"message": msg}, True)

    async def _m_refundStarPayment(self, r: _Req) -> bool:
        charge = self.charges.get(str(r.p["telegram_payment_charge_id"]))
        if charge is None or charge["user_id"] != int(r.p["user_id"]):
            raise ApiError(400, "Bad Request: CHARGE_NOT_FOUND")
        if charge["telegram_payment_charge_id"] in self.refunds:
            raise ApiError(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        self.refunds.append(charge["telegram_payment_charge_id"])
        return True
