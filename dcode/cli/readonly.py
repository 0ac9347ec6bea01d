"""`dcode context|info|ask|demo`: commands that run or describe the model and write no file of
the user's."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from dcode.cli import session
from dcode.cli.errors import user_errors
from dcode.cli.render import err_console, proposal_view, say, show
from dcode.errors import InputError


@user_errors
def run_context(spec: str, json_out: bool, flags: dict) -> None:
    """The context `dcode fill` would gather for `spec`, budgeted with the model it would use
    (the server's with an endpoint: its context length and its tokens)."""
    settings = session.settings_for(flags)
    session.check_model(settings)
    session.check_target(spec)
    from dcode.context.result import format_context
    from dcode.workflow import Request, context_for, resolve  # imports torch

    model = session.load(settings)
    target = resolve(Request(spec))
    _, result = context_for(target, model, settings, progress=session.index_progress())
    report = format_context(result, json=json_out)
    sys.stdout.write(report if report.endswith("\n") else report + "\n")


@user_errors
def run_info(flags: dict, json_out: bool) -> None:
    settings = session.settings_for(flags)
    session.check_model(settings)
    from dcode.model.info import describe, readable  # imports torch

    facts = (session.load(settings).facts() if settings.endpoint
             else describe(settings.model, settings.device, settings.dtype))
    if json_out:
        sys.stdout.write(json.dumps(facts, indent=2) + "\n")
        return
    width = max(map(len, facts))
    for key, value in facts.items():
        sys.stdout.write(f"{key.replace('_', ' '):<{width}}  {readable(key, value)}\n")


DEMO_FILE = '''"""A few small utilities."""


def mean(values):
    """Return the arithmetic mean of a non-empty list of numbers."""
    # dcode: fill
'''


@user_errors
def run_demo(flags: dict, live: bool) -> None:
    """Fill a marker in a throwaway example file and show what dcode proposes."""
    from dcode.workflow import Request, propose

    settings = session.settings_for(flags)
    model = session.load(settings)
    with tempfile.TemporaryDirectory(prefix="dcode-demo-") as tmp:
        path = Path(tmp) / "stats.py"
        path.write_text(DEMO_FILE, encoding="utf-8")
        err_console.print(f"demo: filling the `dcode: fill` marker in {path.name} with {model.name} on {model.device}", markup=False)
        stream = propose(Request(str(path)), model, settings)
        proposal = session.drive(stream, model.tokenizer, settings, live, "fill stats.py")
        show(proposal, proposal_view(proposal, model.tokenizer, settings), False, False, pending=False)
    say("demo: nothing was written; `dcode fill FILE` proposes the same for a file of yours")


@user_errors
def run_ask(question: str, flags: dict, live: bool) -> None:
    """An instruction to an instruct model (Dream/LLaDA family), answered on stdout."""
    from dcode.diffusion.engine import generate_stream, has_chat_template
    from dcode.model.hf_tokenizers import chat_prompt_ids

    settings = session.settings_for(flags)
    model = session.load_local(settings, "ask")
    if not has_chat_template(model):
        raise InputError(f"{model.name} has no chat template; `dcode ask` needs an instruct model (--model PATH)")
    ids = chat_prompt_ids(model.tokenizer, model.family, [{"role": "user", "content": question}])
    result = session.drive(generate_stream(model, ids, settings.decode_options()), model.tokenizer, settings, live, "ask")
    sys.stdout.write(result.text.rstrip() + "\n")
    err_console.print(f"{result.stats.tokens} tokens in {result.stats.forward_passes} passes", markup=False)
