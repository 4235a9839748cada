"""Visual Stability: the Self-Forcing++ Gemini judge, through the google-genai SDK.

The whole video is uploaded with the Files API, polled until ACTIVE, and rated 0-5 on the
paper's exposure-stability rubric (reasoning first, then the score) with structured JSON
output; sfpp maps the rating to 0-100 as score x 20. The judge model is recorded with every
score: ratings from different judges are not comparable with each other or with the paper.

Network behaviour (whatever HTTP layer the SDK uses by default; google-genai 3.x uses httpx2):

* every request has a timeout (`timeout_s`, the SDK's own `HttpOptions(timeout=...)`);
* 408/429/5xx replies and transport errors (dropped connection, connect error, timeout) are
  retried with exponential backoff and jitter, honouring ``Retry-After`` and
  ``RetryInfo.retryDelay`` up to `max_delay_s` (a longer wait asked for is an error, not a wait).
  The SDK's own `HttpRetryOptions` is not used: it ignores Retry-After, does not retry a dropped
  connection and does not cover the upload's data requests;
* an upload is deleted on every path: scored, failed, FAILED or stuck in PROCESSING, cancelled;
* a rejected API key (401/403/API_KEY_INVALID) raises `JudgeAuthError`, which is never retried;
* `cancel()` (called on Ctrl-C) stops waits and retries at once and deletes uploads in flight.
The API key never appears in a message: anything echoed back by the server is redacted.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from sfpp.errors import SfppError

PROMPT_VERSION = "sfpp-exposure-v1"
DEFAULT_JUDGE_MODEL = "gemini-2.5-pro"
DEFAULT_TIMEOUT_S = 300.0
RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})

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


def rubric_version() -> str:
    """`PROMPT_VERSION` plus a hash of the rubric text and reply schema: any edit changes it."""
    blob = RUBRIC + json.dumps(RESPONSE_SCHEMA, sort_keys=True)
    return f"{PROMPT_VERSION}:{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def judge_version(model: str, temperature: float = 0.0) -> str:
    """What, besides the video and its prompt, determines a rating: part of the cache key."""
    return f"rubric={rubric_version()}|model={model}|temperature={temperature:g}"


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


class JudgeAuthError(SfppError):
    """Gemini rejected the API key: no other video can succeed, so the run stops (exit 2)."""


class JudgeCancelled(Exception):
    """`GeminiJudge.cancel()` was called while this rating was in progress."""


class Judge(Protocol):
    model: str

    def rate(self, video_path: Path, prompt: str) -> Rating: ...


def api_key_from_env() -> str | None:
    return os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY")


def parse_reply(text: str | None, *, model: str, finish: str | None = None) -> tuple[int, str]:
    """Validate the judge's JSON reply; raise `JudgeReplyError` describing what is wrong.

    `finish` is the candidate's finish reason; when it is not STOP it is named in the error.
    """
    why = f" (finish reason {finish})" if finish and finish != "STOP" else ""
    if not text or not text.strip():
        raise JudgeReplyError(f"judge {model} returned an empty reply{why}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise JudgeReplyError(f"judge {model} returned malformed JSON{why}: {text.strip()[:120]!r}") from None
    if not isinstance(data, dict):
        raise JudgeReplyError(f"judge {model} returned {type(data).__name__}, expected a JSON object{why}")
    score, reasoning = data.get("score"), data.get("reasoning")
    if isinstance(score, float) and score.is_integer():
        score = int(score)
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 5:
        raise JudgeReplyError(f"judge {model} returned score {score!r}, expected an integer 0-5{why}")
    if not isinstance(reasoning, str) or not reasoning.strip():
        raise JudgeReplyError(f"judge {model} returned no reasoning{why}")
    return score, reasoning.strip()


def parse_response(resp: Any, *, model: str) -> tuple[int, str]:
    """A `GenerateContentResponse` to (score, reasoning); a blocked or cut reply names its reason."""
    fb = getattr(resp, "prompt_feedback", None)
    block = _enum_name(getattr(fb, "block_reason", None)) if fb is not None else None
    if block and block != "BLOCKED_REASON_UNSPECIFIED":
        detail = getattr(fb, "block_reason_message", None)
        raise JudgeReplyError(f"judge {model} blocked the request: block reason {block}" + (f" ({detail})" if detail else ""))
    cands = getattr(resp, "candidates", None) or []
    finish = _enum_name(getattr(cands[0], "finish_reason", None)) if cands else None
    try:
        text = resp.text
    except Exception:  # noqa: BLE001 - malformed candidates: treated as no text
        text = None
    if not text or not text.strip():
        if not cands:
            raise JudgeReplyError(f"judge {model} returned no candidates (no block reason given)")
        if finish and finish != "STOP":
            message = getattr(cands[0], "finish_message", None)
            raise JudgeReplyError(f"judge {model} stopped without a rating: finish reason {finish}"
                                  + (f" ({message})" if message else ""))
    return parse_reply(text, model=model, finish=finish)


def _enum_name(v: Any) -> str | None:
    if v is None:
        return None
    return getattr(v, "name", None) or str(v)


# ---- error classification --------------------------------------------------------------------
def transport_errors() -> tuple[type[BaseException], ...]:
    """Transient transport errors of every HTTP layer google-genai may use (httpx2, httpx, aiohttp,
    requests), plus the standard library's: retried like a 5xx."""
    errs: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for mod in ("httpx", "httpx2"):
        m = sys.modules.get(mod)
        if m is not None:
            errs.append(m.TransportError)
    aio = sys.modules.get("aiohttp")
    if aio is not None:
        errs += [aio.ClientConnectionError, aio.ServerTimeoutError]
    req = sys.modules.get("requests")
    if req is not None:
        errs += [req.exceptions.ConnectionError, req.exceptions.Timeout]
    return tuple(errs)


def _not_transient(e: BaseException) -> bool:
    return type(e).__name__ in ("UnsupportedProtocol", "InvalidURL")


def is_auth_error(e: Any) -> bool:
    """401/403, UNAUTHENTICATED/PERMISSION_DENIED, or Gemini's 400 with reason API_KEY_INVALID."""
    if getattr(e, "code", None) in (401, 403) or getattr(e, "status", None) in AUTH_STATUSES:
        return True
    try:
        blob = json.dumps(getattr(e, "details", None), default=str)
    except (TypeError, ValueError):  # pragma: no cover
        blob = str(getattr(e, "details", ""))
    return "API_KEY_INVALID" in blob


def retry_after_s(e: Any) -> float | None:
    """The wait the server asks for: the ``Retry-After`` header (seconds or an HTTP date) or a
    ``google.rpc.RetryInfo`` ``retryDelay`` in the error details; the longer of the two."""
    waits = []
    headers = getattr(getattr(e, "response", None), "headers", None)
    raw = None
    if headers is not None:
        try:
            raw = headers.get("retry-after") or headers.get("Retry-After")
        except Exception:  # noqa: BLE001 - an exotic headers object
            raw = None
    if raw:
        raw = str(raw).strip()
        try:
            waits.append(float(raw))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
                waits.append(when.timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    details = getattr(e, "details", None)
    err = details.get("error", details) if isinstance(details, dict) else None
    items = err.get("details") if isinstance(err, dict) else None
    for d in items if isinstance(items, list) else []:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)s\s*", str(d.get("retryDelay", "")))
            if m:
                waits.append(float(m.group(1)))
    waits = [w for w in waits if math.isfinite(w)]
    return max(0.0, max(waits)) if waits else None


class GeminiJudge:
    """Rates videos with Gemini through google-genai.

    `client` can be injected (then `api_key`, `base_url` and `timeout_s` are the injector's
    business); otherwise one is built with the SDK's default HTTP layer, `HttpOptions(base_url,
    timeout)`; `base_url` defaults to the SDK's own (``GOOGLE_GEMINI_BASE_URL`` or Google's).
    """

    def __init__(
        self,
        model: str = DEFAULT_JUDGE_MODEL,
        *,
        client: Any = None,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        attempts: int = 5,
        initial_delay_s: float = 2.0,
        max_delay_s: float = 60.0,
        poll_interval_s: float = 2.0,
        poll_timeout_s: float = 600.0,
        delete_timeout_s: float = 10.0,
        temperature: float = 0.0,
        sleep: Callable[[float], None] | None = None,
    ):
        if not (timeout_s > 0 and timeout_s != float("inf")):
            raise SfppError(f"the judge timeout must be a positive number of seconds, got {timeout_s!r}")
        if attempts < 1:
            raise SfppError("the judge needs at least 1 attempt")
        self.model = model
        self.timeout_s = float(timeout_s)
        self.attempts = attempts
        self.initial_delay_s = initial_delay_s
        self.max_delay_s = max_delay_s
        self.poll_interval_s = poll_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.delete_timeout_s = delete_timeout_s
        self.temperature = temperature
        self._cancelled = threading.Event()
        self._user_sleep = sleep
        self._live: dict[str, str] = {}  # uploaded file name -> video label, until deleted
        self._lock = threading.Lock()
        self._key = api_key or (api_key_from_env() if client is None else None)
        if client is None:
            if not self._key:
                raise SfppError(
                    "visual_stability needs a Gemini API key: set GOOGLE_API_KEY or GEMINI_API_KEY; "
                    "for an offline stand-in use --metric exposure_stability_proxy"
                )
            try:
                from google import genai
                from google.genai import types
            except ImportError:
                raise SfppError("visual_stability needs google-genai: pip install 'sfpp[judge]'") from None
            client = genai.Client(
                api_key=self._key,
                http_options=types.HttpOptions(base_url=base_url, timeout=max(1, round(self.timeout_s * 1000))),
            )
        self.client = client

    @property
    def cache_version(self) -> str:
        return judge_version(self.model, self.temperature)

    # ---- cancellation -------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self, *, within_s: float = 3.0) -> list[str]:
        """Stop every rating in progress (waits end at once) and delete the uploads in flight.

        The deletes run in parallel and are given `within_s` seconds in all; returns the names
        of the files deleted. Safe to call from another thread (e.g. on Ctrl-C).
        """
        self._cancelled.set()
        with self._lock:
            names = list(self._live)
        done: list[str] = []

        def delete(name: str) -> None:
            if self._delete(name, timeout_s=within_s):
                done.append(name)

        threads = [threading.Thread(target=delete, args=(n,), daemon=True) for n in names]
        for t in threads:
            t.start()
        deadline = time.monotonic() + within_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return list(done)

    def _check_cancel(self) -> None:
        if self._cancelled.is_set():
            raise JudgeCancelled("cancelled")

    def _sleep(self, seconds: float) -> None:
        if self._user_sleep is not None:
            self._user_sleep(seconds)
        elif self._cancelled.wait(max(0.0, seconds)):
            raise JudgeCancelled("cancelled")
        self._check_cancel()

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "[API key]") if self._key else text

    # ---- retries ---------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any]) -> tuple[Any, int]:
        """Run `fn`, retrying 408/429/5xx and transport errors with exponential backoff + jitter
        (or the server's Retry-After / retryDelay, up to `max_delay_s`)."""
        from google.genai import errors as genai_errors

        transient = transport_errors()
        delay = self.initial_delay_s
        for attempt in range(1, self.attempts + 1):
            self._check_cancel()
            asked: float | None = None
            try:
                return fn(), attempt
            except genai_errors.APIError as e:
                detail = self._redact(f"HTTP {e.code} {e.status or ''} {e.message or ''}".strip())
                if is_auth_error(e):
                    raise JudgeAuthError(f"Gemini rejected the API key on {what} ({detail}); check GOOGLE_API_KEY "
                                         "or GEMINI_API_KEY (and that the key may use the Gemini API)") from None
                retryable = e.code in RETRYABLE_CODES
                asked = retry_after_s(e) if retryable else None
                err = f"{what} failed: {detail}"
                hint = _hint_for(e.code)
            except transient as e:
                if self._cancelled.is_set():
                    raise JudgeCancelled("cancelled") from None
                retryable = not _not_transient(e)
                err = self._redact(f"{what} failed: {type(e).__name__}: {e}".rstrip(": "))
                hint = f"check the network (timeout {self.timeout_s:g} s per request)"
            times = f"after {attempt} attempt{'s' if attempt > 1 else ''}"
            if not retryable or attempt == self.attempts:
                raise SfppError(f"{err} ({times}); {hint}")
            if asked is not None and asked > self.max_delay_s:
                raise SfppError(f"{err} ({times}); Gemini asks to retry after {asked:.0f} s, more than the "
                                f"{self.max_delay_s:.0f} s the judge waits; try again later")
            wait = asked if asked is not None else min(self.max_delay_s, delay) * (1.0 + 0.25 * random.random())
            self._sleep(wait)
            delay *= 2.0
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- the protocol ------------------------------------------------------------------------
    def _upload(self, video_path: Path) -> Any:
        from google.genai import types

        f, _ = self._call(
            "upload",
            lambda: self.client.files.upload(
                file=str(video_path), config=types.UploadFileConfig(mime_type="video/mp4", display_name=video_path.name)
            ),
        )
        return f

    def _wait_active(self, f: Any, label: str, progress: Callable[[str], None] | None) -> Any:
        start = time.monotonic()
        waited = 0.0
        while _state(f) == "PROCESSING" or _state(f) in ("STATE_UNSPECIFIED", None):
            if waited >= self.poll_timeout_s:
                raise SfppError(f"{label}: the uploaded file is still processing after {waited:.0f} s; try again later")
            if progress is not None:
                progress(f"Gemini is processing the upload ({time.monotonic() - start:.0f} s)")
            self._sleep(self.poll_interval_s)
            waited += self.poll_interval_s
            f, _ = self._call("file status", lambda name=f.name: self.client.files.get(name=name))
        if _state(f) != "ACTIVE":
            err = getattr(getattr(f, "error", None), "message", None)
            raise SfppError(f"{label}: Gemini could not process the upload (state {_state(f)}"
                            + (f": {self._redact(err)}" if err else "") + "); check the MP4 plays")
        return f

    def _delete(self, name: str, *, timeout_s: float | None = None) -> bool:
        """Delete an upload (best effort: uploads expire after 48 h anyway); True when it is gone."""
        from google.genai import types

        t = min(self.timeout_s, self.delete_timeout_s) if timeout_s is None else timeout_s
        try:
            self.client.files.delete(
                name=name, config=types.DeleteFileConfig(http_options=types.HttpOptions(timeout=max(1, int(t * 1000))))
            )
        except Exception as e:  # noqa: BLE001
            gone = getattr(e, "code", None) == 404
        else:
            gone = True
        if gone:
            with self._lock:
                self._live.pop(name, None)
        return gone

    def rate(self, video_path: Path, prompt: str, *, progress: Callable[[str], None] | None = None) -> Rating:
        from google.genai import types

        video_path = Path(video_path)
        self._check_cancel()
        f = self._upload(video_path)
        with self._lock:
            self._live[f.name] = video_path.name
        try:
            if self._cancelled.is_set():
                raise JudgeCancelled("cancelled")
            f = self._wait_active(f, video_path.name, progress)
            config = types.GenerateContentConfig(
                response_mime_type="application/json",
                response_json_schema=RESPONSE_SCHEMA,
                temperature=self.temperature,
            )
            contents = [
                types.Part.from_uri(file_uri=f.uri, mime_type=f.mime_type or "video/mp4"),
                RUBRIC.format(prompt=prompt),
            ]
            if progress is not None:
                progress("waiting for the rating")
            resp, attempts = self._call(
                "generate", lambda: self.client.models.generate_content(model=self.model, contents=contents, config=config)
            )
        finally:
            self._delete(f.name)
        try:
            score, reasoning = parse_response(resp, model=self.model)
        except JudgeReplyError as e:
            raise JudgeReplyError(self._redact(str(e))) from None
        return Rating(score=score, reasoning=reasoning, judge_model=self.model, attempts=attempts)


def _hint_for(code: int | None) -> str:
    if code == 429:
        return "rate limit or quota exhausted; try later or lower --judge-concurrency"
    if code is not None and code >= 500:
        return "Gemini had a server error; try again later"
    if code == 404:
        return "check --judge-model (is the model available to this key?)"
    return "check --judge-model and the request"


def _state(f: Any) -> str | None:
    s = getattr(f, "state", None)
    if s is None:
        return None
    return getattr(s, "name", None) or str(s)
