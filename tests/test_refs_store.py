"""A job's reference images are part of its record: written with the job, read back as they were."""

from pathlib import Path

from bot.models import Origin, Reference, SeqRequest
from bot.store import Store

REF = Reference(id="r1", kind="photo", chat_id=5, message_id=7, width=1280, height=720, size=9000)


def _request(refs: tuple[Reference, ...]) -> SeqRequest:
    return SeqRequest(
        count=2, size="2048:2048 (1:1)", mode="fast", seed=None, prompt="p", text="t", refs=refs
    )


def test_a_jobs_references_are_written_with_it_and_read_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "seqbot.db")
    try:
        origin = Origin(5, 8, 1, 1, "ada", None, "private")
        job = store.create_job(_request((REF,)), origin)
        assert job is not None and job.refs == [REF]
        store.update(job, refs=[*job.refs, Reference("r2", "result", 5, 9, 64, 36, 100)])
        again = store.get(job.id)
        assert again is not None and [r.id for r in again.refs] == ["r1", "r2"]
        plain = store.create_job(_request(()), Origin(5, 10, 1, 1, "ada", None, "private"))
        assert plain is not None and plain.refs == []
    finally:
        store.close()


async def test_reference_files_are_kept_owner_only_beside_the_results_and_go_with_them(
    tmp_path: Path,
) -> None:
    import pytest

    from bot.originals import OriginalsCache

    cache = OriginalsCache(tmp_path / "originals", keep_days=1, max_bytes=None)
    await cache.save_ref(3, "abcdefgh12", b"jpeg-bytes")
    path = cache.ref_path(3, "abcdefgh12")
    assert path == tmp_path / "originals" / "3" / "refs" / "abcdefgh12.jpg"
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert await cache.load_ref(3, "abcdefgh12") == b"jpeg-bytes"
    assert cache.total_bytes == len(b"jpeg-bytes")
    for bad in ("../../etc", "a/b", "short"):
        with pytest.raises(ValueError):
            cache.ref_path(3, bad)
    cache.keep_seconds = -1  # everything is past its time
    assert await cache.prune() == 1
    assert await cache.load_ref(3, "abcdefgh12") is None
