"""The values that cross the package's seams: jobs, requests, origins, outcomes (pure).

``store`` turns them into rows and back (JSON lives only there); ``command``, ``jobs``,
``delivery``, ``status``, ``render`` and ``handlers`` pass them around.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import NamedTuple


@dataclass(frozen=True)
class ChatDefaults:
    """A chat's defaults (from /settings) for options a /seq command leaves out."""

    count: int | None = None
    size: str | None = None
    mode: str | None = None


@dataclass(frozen=True)
class Reference:
    """One reference image of a job: cleaned, kept on disk as ``originals/<job>/refs/<id>.jpg``,
    and published to RunComfy at a signed URL while the job runs."""

    id: str  # random (secrets.token_urlsafe): the file's name, never chosen by a user
    # "photo", "document" (an image sent as a file), "result" (one of the bot's images) or
    # "cast" (a saved character's image, named by ``name``)
    kind: str
    chat_id: int  # the message it came from, for Details
    message_id: int
    width: int  # after cleaning (EXIF orientation applied, downscaled)
    height: int
    size: int  # bytes of the kept JPEG
    job_id: int = 0  # kind "result": the job whose image it is (for Details)
    name: str = ""  # kind "cast": the character's name, as saved (for the text and Details)


@dataclass(frozen=True)
class CastMember:
    """A saved character (``/cast``): whose it is, its name as saved, how many images it has.
    A draft holds new images for a name already taken until its owner says Replace or Keep."""

    id: int
    owner_id: int  # the requester: a person, or a chat identity (channel, anonymous admin)
    name: str
    key: str  # the name casefolded: how it is matched
    images: int
    created_at: float
    draft: bool = False


@dataclass(frozen=True)
class CastImage:
    """One image of a saved character: a cleaned JPEG and where it came from."""

    data: bytes
    width: int
    height: int
    chat_id: int
    message_id: int


@dataclass(frozen=True)
class SeqRequest:
    """A validated /seq command, ready to be sent."""

    count: int
    size: str  # the exact schema string, e.g. "2560:1440 (16:9)"
    mode: str
    seed: int | None
    prompt: str  # what the user wrote
    text: str  # what RunComfy gets: the prompt, stating the number of images
    panels: tuple[str, ...] = ()  # a script's items, one per image, in order (else empty)
    # Reference images, in the order the model reads them ("image 1" is the first): with any, the
    # job goes to RunComfy's edit-sequential endpoint.
    refs: tuple[Reference, ...] = ()
    # A story (issue 21): ➡️ Continue makes the next episode of ``story`` (the first job), right
    # after job ``continues``; ✏️ Redo makes version ``redo_version`` of panel ``redo_panel``
    # (0-based) of job ``redo_of``.
    continues: int | None = None
    story: int | None = None
    episode: int | None = None
    redo_of: int | None = None
    redo_panel: int | None = None
    redo_version: int | None = None


@dataclass(frozen=True)
class Origin:
    """Where a job comes from: the message it answers and who asked."""

    chat_id: int
    message_id: int
    user_id: int | None
    requester_id: int | None  # whose quota and caps: the posting channel or group, else the user
    user_name: str | None
    thread_id: int | None
    chat_type: str | None
    lang: str | None = None


class UnitKind(StrEnum):
    """How a delivery unit goes to Telegram."""

    PHOTO = "photo"
    DOCUMENT = "document"


@dataclass(frozen=True)
class DeliveryUnit:
    """One send: a photo or document, or an album of them (image indexes, in order)."""

    kind: UnitKind
    items: tuple[int, ...]


class CancelOutcome(Enum):
    """What a request to cancel a job came to."""

    CANCELLED = "cancelled"
    PENDING = "pending"  # not submitted yet: the job's task cancels it as soon as it can
    TOO_LATE = "too_late"  # RunComfy started generating
    FINAL = "final"  # it had already ended


class Usage(NamedTuple):
    """A requester's images and cost over a period; ``unknown`` of the images may be billed."""

    images: int
    cost: float
    unknown: int = 0


class Status(StrEnum):
    """Where a job is in its life."""

    NEW = "new"  # row written, RunComfy not called yet
    SUBMITTING = "submitting"  # the submit POST is (or was) in flight
    QUEUED = "queued"
    RUNNING = "running"
    SENDING = "sending"  # RunComfy finished; delivering to Telegram
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


FINAL = frozenset({Status.DONE, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT})
CANCELLABLE = frozenset({Status.NEW, Status.SUBMITTING, Status.QUEUED})


@dataclass
class Job:
    """One row of ``jobs``."""

    id: int
    chat_id: int
    message_id: int
    count: int
    size: str
    mode: str
    prompt: str
    text: str
    status: Status
    user_id: int | None = None
    requester_id: int | None = None  # sender_chat.id when the message had one, else user_id
    user_name: str | None = None
    thread_id: int | None = None
    chat_type: str | None = None
    status_message_id: int | None = None
    seed: int | None = None
    request_id: str | None = None
    queue_position: int | None = None
    cancel_requested: int = 0
    status_shown: str | None = None
    error: str | None = None
    image_urls: list[str] = field(default_factory=list)
    plan: list[DeliveryUnit] | None = None  # fixed once the images are in
    delivered: list[int] = field(default_factory=list)
    delivered_images: int = 0
    cost: float | None = None
    created_at: float = 0.0
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    completed_at: float | None = None
    updated_at: float | None = None
    lang: str | None = None
    actions_message_id: int | None = None
    originals: dict[str, str] = field(default_factory=dict)
    photos: dict[str, str] = field(default_factory=dict)  # image index -> file_id of the photo
    submit_unknown: int = 0  # the submit POST got no answer: RunComfy may have billed it
    panels: list[str] = field(default_factory=list)  # a script's items: image i is panel i
    refs: list[Reference] = field(default_factory=list)  # reference images, in order
    # How Telegram knows each delivered image, for a reply to it: "m:<message id>" and
    # "u:<file_unique_id>" -> image index.
    image_keys: dict[str, int] = field(default_factory=dict)
    continues: int | None = None  # the job this one is the next episode of (➡️ Continue)
    story: int | None = None  # the story's first job
    episode: int | None = None  # 2 for the first Continue, and so on
    redo_of: int | None = None  # ✏️ Redo: the job whose panel this one redoes
    redo_panel: int | None = None  # that panel's index (0-based)
    redo_version: int | None = None  # 2 for the first redo of the panel, and so on

    @property
    def final(self) -> bool:
        """True once nothing more will happen to the job."""
        return self.status in FINAL
