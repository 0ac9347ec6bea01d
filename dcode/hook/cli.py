"""`dcode hook ...`: thin command-line wrappers over `dcode.hook` (registered by `dcode.cli`).

`dcode.cli` imports this module on every start, so everything heavy (the model pulls in torch)
is imported inside the commands.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

hook_app = typer.Typer(
    help="Git pre-commit fix-ups: fill `dcode: fill` markers and repair syntax errors in staged files. "
    "`dcode hook install` sets it up; it never stages or commits.",
    no_args_is_help=True,
)

FilesArg = Annotated[
    Optional[list[str]],
    typer.Argument(help="Files to handle (default: every staged file in a language dcode can parse).", show_default=False),
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail (exit 3) when the model or device is unavailable instead of skipping.")]
AttemptsOpt = Annotated[int, typer.Option("--attempts", min=1, help="Tries per hole; every candidate is re-parsed before it is kept.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model directory (default: $DCODE_MODEL, else the shipped model).")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
NoServerOpt = Annotated[bool, typer.Option("--no-server", help="Do not use a running `dcode serve`; load the model here.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace a pre-commit hook dcode did not install (it is kept as a backup).")]
WarnOnlyOpt = Annotated[bool, typer.Option(
    "--warn-only", envvar="DCODE_HOOK_WARN_ONLY",
    help="Let a commit through when a staged file is left broken (a warning instead of exit 1).")]
ReviewOpt = Annotated[bool, typer.Option(
    "--review", help="Review the fixes of all files as one change (accept all, some hunks, or none) before writing; "
    "without a terminal they are kept pending for `dcode accept`.")]


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`dcode.cli.errors.user_errors` (one-line error, exit code), imported when the command runs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dcode.cli.errors import user_errors as guard

        return guard(fn)(*args, **kwargs)

    return wrapper


def _flags(ctx: typer.Context, **kwargs: object) -> dict:
    """Global flags (`dcode --model X hook run`) overridden by the command's own."""
    merged = dict(ctx.obj or {})
    merged.update({k: v for k, v in kwargs.items() if v is not None})
    return merged


@user_errors
def _run(flags: dict, files: list[str] | None, *, write: bool, strict: bool, attempts: int, use_server: bool,
         warn_only: bool, review: bool = False) -> int:
    import os

    from dcode.cli.render import err_console
    from dcode.cli.review import review_fixups
    from dcode.cli.session import load, settings_for
    from dcode.hook.filler import HoleFiller
    from dcode.hook.run import run_hook
    from dcode.server import usable_server

    settings = settings_for(flags)
    token = os.environ.get("DCODE_SERVE_TOKEN")
    # With an endpoint, `load` reaches that server (dcode.remote) and nothing else is tried.
    find_server = (lambda: usable_server(flags, token)) if use_server and not settings.endpoint else None
    filler = HoleFiller(settings, lambda: load(settings), find_server, token)
    return run_hook(files or None, filler, write=write, strict=strict, console=err_console, max_attempts=attempts,
                    warn_only=warn_only, review=review_fixups if review else None)


@hook_app.command("run")
def run(
    ctx: typer.Context, files: FilesArg = None, strict: StrictOpt = False, attempts: AttemptsOpt = 4,
    model: ModelOpt = None, device: DeviceOpt = None, no_server: NoServerOpt = False,
    warn_only: WarnOnlyOpt = False, review: ReviewOpt = False,
) -> None:
    """Fix staged files in place. Exits 1 when it changed files (review them, `git add`, commit again)
    or left one broken."""
    flags = _flags(ctx, model=model, device=device)
    raise typer.Exit(_run(flags, files, write=True, strict=strict, attempts=attempts, use_server=not no_server,
                          warn_only=warn_only, review=review))


@hook_app.command("check")
def check(
    ctx: typer.Context, files: FilesArg = None, strict: StrictOpt = False, attempts: AttemptsOpt = 4,
    model: ModelOpt = None, device: DeviceOpt = None, no_server: NoServerOpt = False,
    warn_only: WarnOnlyOpt = False,
) -> None:
    """Print the diff `dcode hook run` would apply; exit 1 if there is one or a file is left broken.
    Writes nothing."""
    flags = _flags(ctx, model=model, device=device)
    raise typer.Exit(_run(flags, files, write=False, strict=strict, attempts=attempts, use_server=not no_server,
                          warn_only=warn_only))


@user_errors
def _install(force: bool) -> None:
    from dcode.cli.render import err_console
    from dcode.cli.session import project_root
    from dcode.hook.install import install_hook

    err_console.print(install_hook(project_root(), force), markup=False, highlight=False)


@user_errors
def _uninstall() -> None:
    from dcode.cli.render import err_console
    from dcode.cli.session import project_root
    from dcode.hook.install import uninstall_hook

    err_console.print(uninstall_hook(project_root()), markup=False, highlight=False)


@hook_app.command()
def install(force: ForceOpt = False) -> None:
    """Install dcode as this repository's git pre-commit hook (refuses to clobber another hook)."""
    _install(force)


@hook_app.command()
def uninstall() -> None:
    """Remove dcode's pre-commit hook and restore the hook it replaced, if any."""
    _uninstall()
