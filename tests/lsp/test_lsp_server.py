"""`dcode lsp` end to end: a subprocess driven with pytest-lsp's client, the shipped model behind it.

One server for the module (as one editor session): initialize, open documents, inline completion
(compared with what `dcode complete` answers for the same buffer), reuse while typing, the
completion fallback, the three code actions applied (compared with `dcode fill`, `dcode refine`
and `dcode write` on the same text), cancellation, a newer request, bad documents, settings and
model errors; then servers of their own: errors on stderr and shutdown, `--tcp`, a bad flag.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Union

import pytest
import pytest_asyncio
from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient as PyglsClient
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import register_lsp_features

from dcode.complete.completer import Completer
from dcode.edit.proposal import Proposal
from dcode.edit.targets import find_holes
from dcode.errors import ModelError
from dcode.model.loader import load_model
from dcode.workflow import Request, propose, refine
from tests.lsp.conftest import EDITOR_SETTINGS, GEO, Reference, Workspace

TIMEOUT = 120.0
in_session = pytest.mark.asyncio(loop_scope="module")
SCRATCH = "def add(a, b):\n    return \n"  # the buffer; scratch.py on disk says something else
CURSOR = SCRATCH.index("\n", SCRATCH.index("return"))  # line 1, character 11


def fixed_converter():
    """lsprotocol's converter, except that a CodeAction carrying a command stays a CodeAction: its
    hook for `Command | CodeAction` takes any object with a "command" key for a Command."""
    converter = get_converter()
    converter.register_structure_hook(
        Union[types.Command, types.CodeAction],
        lambda obj, _: converter.structure(obj, types.Command if isinstance(obj.get("command"), str)
                                           else types.CodeAction))
    return converter


def make_client() -> LanguageClient:
    """pytest-lsp's client that also applies `workspace/applyEdit` (it records the edits)."""
    client = LanguageClient(converter_factory=fixed_converter)
    register_lsp_features(client)
    client.applied = []
    client.texts = {}  # the buffers as this editor has them

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(ls: LanguageClient, params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        ls.applied.append(params.edit)
        return types.ApplyWorkspaceEditResult(applied=True)

    return client


async def start(workspace: Workspace, options: dict | None) -> LanguageClient:
    config = ClientServerConfig(server_command=[sys.executable, "-m", "dcode", "lsp"], server_env=workspace.env,
                                client_factory=make_client)
    client = await config.start()
    result = await client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual_studio_code"), root_uri=workspace.root.as_uri(),
        initialization_options=options))
    client.server_capabilities = result.capabilities
    return client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(workspace: Workspace):
    client = await start(workspace, EDITOR_SETTINGS)
    yield client
    await client.shutdown_session()
    await client.stop()


# -- helpers ---------------------------------------------------------------------------------------
async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), TIMEOUT)


async def notified(client: LanguageClient, method: str, send: Callable[[], None]):
    """Send something, then the next notification `method` the server sends."""
    waiting = asyncio.ensure_future(client.wait_for_notification(method))
    send()
    return await asyncio.wait_for(waiting, TIMEOUT)


async def open_document(client: LanguageClient, uri: str, text: str) -> list[types.Diagnostic]:
    client.texts[uri] = text
    item = types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
    await notified(client, types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS,
                   lambda: client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item)))
    return list(client.diagnostics[uri])


async def replace_text(client: LanguageClient, uri: str, text: str, version: int) -> None:
    client.texts[uri] = text
    change = types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)])
    await notified(client, types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS, lambda: client.text_document_did_change(change))


def inline_params(uri: str, line: int, character: int, token: str | None = None) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        work_done_token=token)


def watch(client: LanguageClient, token: str) -> list:
    """The progress reports the server sends under the client's `token`."""
    return client.progress_reports.setdefault(token, [])


def offset(text: str, position: types.Position) -> int:
    lines = text.splitlines(keepends=True)
    return sum(len(line) for line in lines[: position.line]) + position.character


def apply(text: str, edit: types.WorkspaceEdit) -> str:
    (change,) = edit.document_changes
    for text_edit in sorted(change.edits, key=lambda e: offset(text, e.range.start), reverse=True):
        text = text[: offset(text, text_edit.range.start)] + text_edit.new_text + text[offset(text, text_edit.range.end) :]
    return text


def reference_completion(reference: Reference, prefix: str, suffix: str, filename: str) -> str:
    """What `dcode complete` answers for this buffer, with the server's settings."""
    completer = Completer(dict(EDITOR_SETTINGS))
    completer.settings, completer.model = reference.settings, reference.model
    return completer.answer({"input_prefix": prefix, "input_suffix": suffix, "filename": filename})["content"]


def last_proposal(stream) -> Proposal:
    return [item for item in stream if isinstance(item, Proposal)][-1]


async def code_actions(client: LanguageClient, uri: str, start: tuple[int, int], end: tuple[int, int] | None = None):
    selection = types.Range(start=types.Position(*start), end=types.Position(*(end or start)))
    return await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=selection,
        context=types.CodeActionContext(diagnostics=[])))


async def run_action(client: LanguageClient, action: types.CodeAction) -> types.WorkspaceEdit:
    """Execute the action's command; the edit the server asked the editor to apply (also its result)."""
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=action.command.command, arguments=action.command.arguments))
    applied = client.applied[-1]
    assert result == get_converter().unstructure(applied)
    return applied


def passes(reports: list, pattern: str) -> int:
    match = re.fullmatch(pattern, reports[-1].message)
    assert match, reports[-1]
    return int(match[1])


# -- the session -----------------------------------------------------------------------------------
@in_session
async def test_initialize_advertises_completions_code_actions_and_the_commands(client):
    caps = client.server_capabilities
    assert caps.inline_completion_provider is not None and caps.completion_provider is not None
    assert caps.code_action_provider is not None
    assert set(caps.execute_command_provider.commands) == {"dcode.fillHole", "dcode.writeFunction", "dcode.refineSelection"}


@in_session
async def test_opening_a_document_marks_each_hole_dcode_can_fill_with_a_hint(client, workspace):
    diagnostics = await open_document(client, workspace.uri("geo.py"), GEO)
    holes = find_holes(workspace.root / "geo.py")
    assert [(d.range.start.line + 1, d.code) for d in diagnostics] == [(h.line_range[0], h.kind) for h in holes]
    assert [h.kind for h in holes] == ["marker", "stub"]
    assert {d.severity for d in diagnostics} == {types.DiagnosticSeverity.Hint}


@in_session
async def test_inline_completion_is_what_dcode_complete_answers_for_the_unsaved_buffer(client, workspace, reference):
    uri = workspace.uri("scratch.py")
    await open_document(client, uri, SCRATCH)
    reports = watch(client, "inline-1")
    result = await client.text_document_inline_completion_async(inline_params(uri, 1, 11, "inline-1"))
    expected = reference_completion(reference, SCRATCH[:CURSOR], SCRATCH[CURSOR:], str(workspace.root / "scratch.py"))
    assert expected.strip()
    assert [(item.insert_text, item.range.start, item.range.end) for item in result.items] == [
        (expected, types.Position(line=1, character=11), types.Position(line=1, character=11))]
    # $/progress: begun, one report per denoising pass, ended with the count.
    assert reports[0].kind == "begin" and all(r.message.startswith("pass ") for r in reports[1:-1])
    assert passes(reports, r"done in (\d+) passes") == len(reports) - 2 > 0


@in_session
async def test_typing_into_the_suggestion_is_answered_with_the_rest_of_it(client, workspace):
    uri = workspace.uri("scratch.py")
    first = await client.text_document_inline_completion_async(inline_params(uri, 1, 11))
    suggestion = first.items[0].insert_text
    typed = suggestion.split("\n")[0][:2]
    assert typed
    await replace_text(client, uri, SCRATCH[:CURSOR] + typed + SCRATCH[CURSOR:], version=2)
    reports = watch(client, "inline-typed")
    result = await client.text_document_inline_completion_async(inline_params(uri, 1, 11 + len(typed), "inline-typed"))
    assert [item.insert_text for item in result.items] == [suggestion[len(typed):]]
    assert reports == []  # no model run: no progress


@in_session
async def test_completion_falls_back_to_one_item_that_covers_the_word_at_the_cursor(client, workspace, reference):
    uri = workspace.uri("scratch.py")
    text = "def add(a, b):\n    ret\n"
    await replace_text(client, uri, text, version=3)
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=1, character=7)))
    cursor = text.index("ret") + 3
    expected = reference_completion(reference, text[:cursor], text[cursor:], str(workspace.root / "scratch.py"))
    assert result.is_incomplete
    assert [(item.text_edit.range.start, item.text_edit.range.end, item.text_edit.new_text) for item in result.items] == [
        (types.Position(line=1, character=4), types.Position(line=1, character=7), "ret" + expected)]


@in_session
async def test_fill_hole_applies_the_proposal_dcode_fill_makes(client, workspace, reference):
    uri = workspace.uri("geo.py")
    actions = await code_actions(client, uri, (5, 4))
    assert [(a.title, a.kind) for a in actions] == [("dcode: fill hole", types.CodeActionKind.QuickFix),
                                                    ("dcode: write function", types.CodeActionKind.RefactorRewrite)]
    edit = await run_action(client, actions[0])
    expected = last_proposal(propose(Request(str(workspace.root / "geo.py")), reference.model, reference.settings))
    assert apply(GEO, edit) == expected.new_text(GEO)
    (token,) = [t for t in client.progress_reports if str(t).startswith("dcode-")]  # the server's own
    reports = client.progress_reports[token]
    assert reports[0].title == "dcode: fill hole" and passes(reports, r"done in (\d+) passes") > 0
    await replace_text(client, uri, apply(GEO, edit), version=2)  # as the editor's buffer now is
    client.fill = expected


@in_session
async def test_refine_in_the_fill_re_masks_its_weakest_tokens_as_dcode_refine_does(client, workspace, reference):
    uri = workspace.uri("geo.py")
    actions = await code_actions(client, uri, (5, 0))  # the fill starts there
    edit = await run_action(client, next(a for a in actions if a.title == "dcode: refine selection"))
    expected = last_proposal(refine(client.fill, reference.model, reference.settings, text=GEO))
    assert apply(client.texts[uri], edit) == expected.new_text(GEO)
    await replace_text(client, uri, apply(client.texts[uri], edit), version=3)


@in_session
async def test_refining_a_selection_outside_any_fill_generates_it_again(client, workspace):
    uri = workspace.uri("geo.py")
    text = client.texts[uri]
    line = text.splitlines().index('    """Return the area of a width x height rectangle."""')
    actions = await code_actions(client, uri, (line, 11), (line, 15))  # "the "
    edit = await run_action(client, next(a for a in actions if a.title == "dcode: refine selection"))
    (change,) = edit.document_changes
    assert change.text_document.version == 3  # tied to the buffer it was made for
    start = offset(text, types.Position(line=line, character=11))
    end = start + len("the ")
    after = apply(text, edit)
    assert after[:start] == text[:start] and after[len(after) - (len(text) - end) :] == text[end:]
    await replace_text(client, uri, after, version=4)


@in_session
async def test_write_function_writes_the_body_dcode_write_would(client, workspace, reference):
    path = workspace.root / "shapes.py"
    text = 'def area(width, height):\n    """Return the area of a width x height rectangle."""\n    return 0\n'
    path.write_text(text, encoding="utf-8")
    await open_document(client, path.as_uri(), text)
    actions = await code_actions(client, path.as_uri(), (0, 6))  # on the name
    assert [a.title for a in actions] == ["dcode: write function"]
    edit = await run_action(client, actions[0])
    expected = last_proposal(propose(Request(f"{path}::area", "write"), reference.model, reference.settings))
    assert apply(text, edit) == expected.new_text(text)


@in_session
async def test_cancel_request_stops_the_running_completion(client, workspace):
    slow = {**EDITOR_SETTINGS, "tokens_per_step": 1, "max_tokens": 256}  # one token a pass: many passes
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"dcode": slow}))
    uri = workspace.uri("cancel.py")
    await open_document(client, uri, SCRATCH)
    cancelled = watch(client, "cancelled")
    request = asyncio.ensure_future(client.protocol.send_request_async(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 1, 11, "cancelled"), msg_id="to-cancel"))
    await until(lambda: len(cancelled) > 1)  # begun, and a pass reported
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="to-cancel"))
    with pytest.raises(JsonRpcException) as err:
        await request
    assert err.value.code == types.LSPErrorCodes.RequestCancelled
    stopped = passes(cancelled, r"stopped after (\d+) passes: cancelled by the editor")
    finished = watch(client, "finished")
    result = await client.text_document_inline_completion_async(inline_params(uri, 1, 11, "finished"))
    assert result is not None
    assert stopped < passes(finished, r"done in (\d+) passes")


@in_session
async def test_a_newer_request_stops_the_running_one(client, workspace):
    uri = workspace.uri("newer.py")
    await open_document(client, uri, "def sub(a, b):\n    return \n")
    older_reports = watch(client, "older")
    older = asyncio.ensure_future(client.text_document_inline_completion_async(inline_params(uri, 1, 11, "older")))
    await until(lambda: len(older_reports) > 1)
    newer = await client.text_document_inline_completion_async(inline_params(uri, 0, 0))
    assert await older is None  # stopped: its answer would be for text the user has changed
    assert passes(older_reports, r"stopped after (\d+) passes: a newer request") > 0
    assert isinstance(newer, types.InlineCompletionList)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"dcode": EDITOR_SETTINGS}))


@in_session
async def test_bad_documents_and_arguments_get_one_line_errors_and_the_server_goes_on(client, workspace):
    with pytest.raises(JsonRpcException) as err:
        await client.text_document_inline_completion_async(inline_params(workspace.uri("never-opened.py"), 0, 0))
    assert err.value.code == types.LSPErrorCodes.RequestFailed
    assert err.value.message.endswith("never-opened.py is not open in the editor (send textDocument/didOpen first)")
    blob = workspace.uri("blob.py")
    assert await open_document(client, blob, "x = 1\0\n# dcode: fill\n") == []  # nothing dcode would edit
    arguments = [{"uri": blob, "range": {"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 0}}}]
    shown = asyncio.ensure_future(client.wait_for_notification(types.WINDOW_SHOW_MESSAGE))
    with pytest.raises(JsonRpcException) as err:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="dcode.fillHole",
                                                                                arguments=arguments))
    message = (await asyncio.wait_for(shown, TIMEOUT)).message
    assert message == f"dcode: error: {workspace.root / 'blob.py'} is a binary file" == f"dcode: error: {err.value.message}"
    with pytest.raises(JsonRpcException) as err:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="dcode.fillHole", arguments=[]))
    assert "dcode commands take one argument" in err.value.message
    assert await code_actions(client, workspace.uri("geo.py"), (0, 0)) is not None  # still serving


@in_session
async def test_bad_settings_and_model_errors_are_shown_as_the_cli_words_them(client, workspace):
    def configure(settings: dict) -> None:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"dcode": settings}))

    told = await notified(client, types.WINDOW_SHOW_MESSAGE, lambda: configure({"threshold": 7}))
    assert (told.type, told.message) == (types.MessageType.Error,
                                         "dcode: error: --threshold must be a number between 0 and 1, got 7")
    told = await notified(client, types.WINDOW_SHOW_MESSAGE, lambda: configure({"bogus": 1}))
    assert told.message == "dcode: error: workspace/didChangeConfiguration: unknown setting 'bogus'"
    missing = workspace.root / "no-such-model"
    with pytest.raises(ModelError) as cli_error:
        load_model(str(missing), device="cpu")
    configure({**EDITOR_SETTINGS, "model": str(missing)})
    shown = asyncio.ensure_future(client.wait_for_notification(types.WINDOW_SHOW_MESSAGE))
    with pytest.raises(JsonRpcException):
        await client.text_document_inline_completion_async(inline_params(workspace.uri("scratch.py"), 0, 0))
    assert (await asyncio.wait_for(shown, TIMEOUT)).message == f"dcode: error: {cli_error.value}"
    configure(EDITOR_SETTINGS)
    assert await client.text_document_inline_completion_async(inline_params(workspace.uri("scratch.py"), 1, 0)) is not None


# -- a server of its own ---------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_errors_are_one_line_on_stderr_and_shutdown_then_exit_ends_with_status_0(workspace, capfd):
    client = await start(workspace, None)
    with pytest.raises(JsonRpcException):
        await client.text_document_inline_completion_async(inline_params(workspace.uri("never-opened.py"), 0, 0))
    await client.shutdown_session()
    assert client._server.returncode == 0
    await until(lambda: client._stderr_forwarder.done())  # the server's stderr, read to its end
    await client.stop()
    sys.stderr.flush()
    err = capfd.readouterr().err
    assert f"dcode: error: {workspace.uri('never-opened.py')} is not open in the editor" in err
    assert "Traceback" not in err


@pytest.mark.asyncio
async def test_tcp_serves_a_client_that_connects(workspace):
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "dcode", "lsp", "--tcp", str(port)], env=workspace.env)
    try:
        client = PyglsClient("tcp-test", "1")
        await until_connected(client, port)
        result = await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
        assert result.server_info.name == "dcode"
        await client.shutdown_async(None)
        client.exit(None)
        assert await asyncio.to_thread(server.wait, TIMEOUT) == 0
        await client.stop()
    finally:
        server.kill()


async def until_connected(client: PyglsClient, port: int) -> None:
    async def connect() -> None:
        while True:
            try:
                return await client.start_tcp("127.0.0.1", port)
            except OSError:  # not listening yet
                await asyncio.sleep(0.1)

    await asyncio.wait_for(connect(), TIMEOUT)


def test_a_bad_flag_is_one_line_and_exit_2(workspace):
    done = subprocess.run([sys.executable, "-m", "dcode", "lsp", "--threads", "0"], capture_output=True, text=True,
                          env=workspace.env, timeout=TIMEOUT, check=False)
    assert (done.returncode, done.stderr) == (2, "dcode: error: --threads must be a whole number of at least 1, got 0\n")
