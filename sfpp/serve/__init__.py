"""`sfpp serve`: an endless, steerable video stream in the browser.

One page (``static/``): the live video, a prompt box (Enter switches the prompt at the next
chunk), pause/resume, restart with a new seed, the time and delivered frames/s, and "save what
I watched" (MP4 + JSON sidecar with the prompt schedule actually used). Behind it a Starlette
app served by uvicorn (`sfpp.serve.app`), one WebSocket per page, one `sfpp.stream` per
WebSocket (`sfpp.serve.session`).

* Pacing: frames are sent at the video's frame rate; the stream's worker runs at most a few
  chunks ahead of playback, then waits (`sfpp.stream`).
* Slow pages: the page acknowledges each frame it has drawn; at most `MAX_IN_FLIGHT` frames
  are unacknowledged. Beyond that, frames are dropped (``--when-slow drop``, the default) or
  playback and generation wait (``--when-slow wait``); the page says which. Server memory
  does not grow with a slow page.
* Safety (`sfpp.serve.config`): binds 127.0.0.1; any other host needs an access token, and
  every request without it is refused. Prompt length, sessions and stream length are capped.
  Closing the tab stops its generation.
"""
