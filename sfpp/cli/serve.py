"""`sfpp serve`: an endless, steerable video stream in the browser."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from sfpp.cli._common import console, user_errors
from sfpp.cli._options import CheckpointOpt, DeviceOpt, DtypeOpt, LoraOpt, ModelOpt, ThreadsOpt, WeightsOpt


def serve_cmd(
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on. Anything but loopback (127.0.0.1, ::1, localhost) needs a token.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 7860,
    token: Annotated[Optional[str], typer.Option(
        "--token", help="Access token every request must carry (the printed URL has it). Off loopback one is "
        "generated and printed when not given.", show_default=False)] = None,
    max_sessions: Annotated[int, typer.Option(
        "--max-sessions", help="Generations at a time; further pages are told the server is busy.")] = 1,
    max_seconds: Annotated[float, typer.Option(
        "--max-seconds", help="Longest stream in seconds; then it ends (restart for a new one).")] = 1800.0,
    max_prompt_chars: Annotated[int, typer.Option(
        "--max-prompt-chars", help="Longest prompt accepted, in characters.")] = 500,
    when_slow: Annotated[str, typer.Option(
        "--when-slow", help="A page that cannot keep up: 'drop' frames (playback stays real time) or 'wait' "
        "(playback and generation wait for it). The page says which is happening.")] = "drop",
    save_dir: Annotated[str, typer.Option(
        "--save-dir", help="Where 'save what I watched' writes the MP4 and its JSON sidecar.")] = "outputs/serve",
    prompt: Annotated[Optional[str], typer.Option(
        "--prompt", help="The page's first prompt (default: one for the model).", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the first stream (restarts draw new ones).")] = 0,
    weights: WeightsOpt = None,
    lora: LoraOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Serve a live video in the browser: watch it as it is generated, switch prompts while it plays.

    Opens nothing by itself: it prints the address to open. Generation is paced to playback; a
    page that cannot keep up gets frames dropped (or, with --when-slow wait, generation waits).
    Closing the tab stops its generation. Ctrl-C stops the server.
    """
    from pathlib import Path

    from sfpp.serve.config import ServeConfig, is_loopback, new_token
    from sfpp.spec import VideoSpec

    with user_errors():
        generated = False
        if token is None and not is_loopback(host):
            token, generated = new_token(), True
        spec = VideoSpec(model=model, checkpoint=checkpoint, seed=seed, weights=weights, lora=lora, device=device,
                         dtype=dtype, threads=threads)
        config = ServeConfig(spec=spec, host=host, port=port, token=token, max_sessions=max_sessions,
                             max_seconds=max_seconds, max_prompt_chars=max_prompt_chars, when_slow=when_slow,
                             save_dir=Path(save_dir), prompt=prompt).check()
        _check_port_free(host, port)
        from sfpp.serve.app import create_app

        with console.status("loading model"):
            app = create_app(config)
        rs = app.state.spec
        console.print(f"[green]sfpp serve[/]: model {rs.model} ({rs.width}x{rs.height} at {rs.fps} fps), "
                      f"{max_sessions} stream{'s' if max_sessions > 1 else ''} at a time, up to {max_seconds:g} s each")
        if generated:
            console.print("[yellow]access token generated[/] (this address is reachable from other machines; "
                          "every request must carry it)")
        console.print(f"open [bold]{config.url()}[/]   (Ctrl-C stops)", soft_wrap=True, highlight=False)
        from sfpp.serve.app import run_server

        run_server(app, config)


def _check_port_free(host: str, port: int) -> None:
    """One clear error instead of uvicorn's traceback when the port is taken."""
    import socket

    from sfpp.errors import SfppError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as e:
            raise SfppError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port") from None
