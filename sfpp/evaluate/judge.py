"""Visual Stability: the Self-Forcing++ Gemini judge, through the google-genai SDK.

The whole video is uploaded with the Files API, polled until ACTIVE, and rated 0-5 on the
paper's exposure-stability rubric (reasoning first, then the score) with structured JSON
output; sfpp maps the rating to 0-100 as score x 20. The judge model is recorded with every
score: ratings from different judges are not comparable with each other or with the paper.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from sfpp.errors import SfppError

PROMPT_VERSION = "sfpp-exposure-v1"
DEFAULT_JUDGE_MODEL = "gemini-2.5-pro"
RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})

# Paraphrase of the Self-Forcing++ exposure-stability rubric (arXiv 2510.02283v1, appendix 8.5).
RUBRIC = """You are an expert video quality rater. Watch the whole video and rate its EXPOSURE STABILITY \
on an integer scale from 0 to 5:
0 - Catastrophic exposure: almost the whole frame is blown out to white or crushed to black; the content is unreadable.
1 - Severe failure: large parts of the frame are dominated by over-exposure or under-exposure.
2 - Noticeable problems: persistent clipping in highlights or shadows; large areas lose detail, but the frame is still viewable.
3 - Moderate issues: clipping exists but is limited in area or in duration.
4 - Minor flaws: small regions are occasionally too bright or too dark, with no real impact.
5 - Well exposed: balanced exposure throughout, no distracting over-exposure or darkening, detail kept in highlights and shadows.
Do not excuse exposure artefacts as an artistic style or a scene transition unless the generation prompt asks for it.
The video was generated from this prompt:
\"\"\"{prompt}\"\"\"
First write a short explanation of what you see (the "reasoning" field), then give the final integer rating (the "score" field)."""

RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string", "description": "Short explanation, written before the score."},
        "score": {"type": "integer", "minimum": 0, "maximum": 5, "description": "Exposure-stability rating 0-5."},
    },
    "required": ["reasoning", "score"],
    "propertyOrdering": ["reasoning", "score"],
}


@dataclass(frozen=True, kw_only=True)
class Rating:
    """One judge verdict on one video."""

    score: int  # 0-5
    reasoning: str
    judge_model: str
    prompt_version: str = PROMPT_VERSION
    attempts: int = 1

    @property
    def value(self) -> float:
        """The 0-100 Visual Stability score (rating x 20)."""
        return 20.0 * self.score


class JudgeReplyError(SfppError):
    """The judge answered, but not with a usable rating: reported, never scored."""


class Judge(Protocol):
    model: str

    def rate(self, video_path: Path, prompt: str) -> Rating: ...


def api_key_from_env() -> str | None:
    return os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY")


def parse_reply(text: str | None, *, model: str) -> tuple[int, str]:
    """Validate the judge's JSON reply; raise `JudgeReplyError` describing what is wrong."""
    if not text or not text.strip():
        raise JudgeReplyError(f"judge {model} returned an empty reply")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise JudgeReplyError(f"judge {model} returned malformed JSON: {text.strip()[:120]!r}") from None
    if not isinstance(data, dict):
        raise JudgeReplyError(f"judge {model} returned {type(data).__name__}, expected a JSON object")
    score, reasoning = data.get("score"), data.get("reasoning")
    if isinstance(score, float) and score.is_integer():
        score = int(score)
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 5:
        raise JudgeReplyError(f"judge {model} returned score {score!r}, expected an integer 0-5")
    if not isinstance(reasoning, str) or not reasoning.strip():
        raise JudgeReplyError(f"judge {model} returned no reasoning")
    return score, reasoning.strip()


class GeminiJudge:
    """Rates videos with Gemini through google-genai; `client` can be injected (tests)."""

    def __init__(
        self,
        model: str = DEFAULT_JUDGE_MODEL,
        *,
        client: Any = None,
        api_key: str | None = None,
        attempts: int = 5,
        initial_delay_s: float = 2.0,
        max_delay_s: float = 60.0,
        poll_interval_s: float = 2.0,
        poll_timeout_s: float = 600.0,
        temperature: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.model = model
        self.attempts = attempts
        self.initial_delay_s = initial_delay_s
        self.max_delay_s = max_delay_s
        self.poll_interval_s = poll_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.temperature = temperature
        self._sleep = sleep
        if client is None:
            key = api_key or api_key_from_env()
            if not key:
                raise SfppError(
                    "visual_stability needs a Gemini API key: set GOOGLE_API_KEY or GEMINI_API_KEY; "
                    "for an offline stand-in use --metric exposure_stability_proxy"
                )
            try:
                from google import genai
            except ImportError:
                raise SfppError("visual_stability needs google-genai: pip install 'sfpp[judge]'") from None
            client = genai.Client(api_key=key)
        self.client = client

    # ---- retries ---------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any]) -> tuple[Any, int]:
        """Run `fn`, retrying 408/429/5xx and transport errors with exponential backoff + jitter."""
        from google.genai import errors as genai_errors

        try:
            import httpx

            transient: tuple[type[BaseException], ...] = (httpx.TransportError,)
        except ImportError:  # pragma: no cover
            transient = ()
        delay = self.initial_delay_s
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(), attempt
            except genai_errors.APIError as e:
                retryable = e.code in RETRYABLE_CODES
                err = f"{what} failed: HTTP {e.code} {e.status or ''} {e.message or ''}".strip()
            except transient as e:
                retryable = True
                err = f"{what} failed: {type(e).__name__}: {e}"
            if not retryable or attempt == self.attempts:
                raise SfppError(f"{err} (after {attempt} attempt{'s' if attempt > 1 else ''}); check the key, quota and --judge-model")
            self._sleep(min(self.max_delay_s, delay) * (1.0 + 0.25 * random.random()))
            delay *= 2.0
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- the protocol ------------------------------------------------------------------------
    def _upload_and_wait(self, video_path: Path) -> Any:
        from google.genai import types

        f, _ = self._call(
            "upload",
            lambda: self.client.files.upload(
                file=str(video_path), config=types.UploadFileConfig(mime_type="video/mp4", display_name=video_path.name)
            ),
        )
        waited = 0.0
        while _state(f) == "PROCESSING" or _state(f) in ("STATE_UNSPECIFIED", None):
            if waited >= self.poll_timeout_s:
                raise SfppError(f"{video_path.name}: the uploaded file is still processing after {waited:.0f} s; try again later")
            self._sleep(self.poll_interval_s)
            waited += self.poll_interval_s
            f, _ = self._call("file status", lambda: self.client.files.get(name=f.name))
        if _state(f) != "ACTIVE":
            raise SfppError(f"{video_path.name}: Gemini could not process the upload (state {_state(f)}); check the MP4 plays")
        return f

    def rate(self, video_path: Path, prompt: str) -> Rating:
        from google.genai import types

        video_path = Path(video_path)
        f = self._upload_and_wait(video_path)
        try:
            config = types.GenerateContentConfig(
                response_mime_type="application/json",
                response_json_schema=RESPONSE_SCHEMA,
                temperature=self.temperature,
            )
            contents = [
                types.Part.from_uri(file_uri=f.uri, mime_type=f.mime_type or "video/mp4"),
                RUBRIC.format(prompt=prompt),
            ]
            resp, attempts = self._call(
                "generate", lambda: self.client.models.generate_content(model=self.model, contents=contents, config=config)
            )
        finally:
            try:
                self.client.files.delete(name=f.name)
            except Exception:  # noqa: BLE001 - best effort: uploads expire after 48 h anyway
                pass
        try:
            text = resp.text
        except Exception:  # noqa: BLE001 - no candidates / blocked reply
            text = None
        score, reasoning = parse_reply(text, model=self.model)
        return Rating(score=score, reasoning=reasoning, judge_model=self.model, attempts=attempts)


def _state(f: Any) -> str | None:
    s = getattr(f, "state", None)
    if s is None:
        return None
    return getattr(s, "name", None) or str(s)
