"""The pygls server: LSP methods wired to the buffers, the suggester, the code actions and the
model worker, with progress, messages and errors as an editor shows them.

Errors: a request that cannot be answered gets an LSP error (RequestFailed) whose message is the
CLI's one line; a model that cannot be used (missing or corrupt checkpoint, an unreachable
endpoint, out of memory) is also told with `window/showMessage` as `dcode: error: ...`, once until
it changes, since completion asks at every keystroke. A command the user ran shows its error."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from dcode import __version__
from dcode.errors import InputError
from dcode.lsp.actions import TITLES, Fill, code_actions, command_target, plan
from dcode.lsp.buffers import Buffer, open_buffer
from dcode.lsp.config import ServerConfig
from dcode.lsp.suggest import Answer, Suggester, completion_items, inline_items
from dcode.lsp.worker import Job, ModelWorker, WorkFailed, checked

HINTS = {"marker": "dcode can fill this marker", "stub": "dcode can write this stub body",
         "syntax_error": "dcode can repair this syntax error"}


class OneLineUserErrors(logging.Filter):
    """pygls logs every failed request with a traceback on stderr (the editor's log). A request
    dcode refused (RequestFailed: the CLI's one-line message, already in the answer) is logged as
    that one line; anything else keeps its traceback, as a bug to report."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, JsonRpcException) and error.code == types.LSPErrorCodes.RequestFailed:
            record.msg, record.args, record.exc_info, record.exc_text = f"dcode: error: {error.message}", (), None, None
        return True


class PassProgress:
    """`$/progress` for one job: a report after every denoising pass (sent from the model's thread
    through the event loop), begun with the first pass, so that an answer that needs no model
    shows none, and ended with how the job went. A client that cancels the progress stops the job."""

    def __init__(self, server: DcodeLanguageServer, token: types.ProgressToken, title: str, job: Job) -> None:
        self.server, self.token, self.title, self.job = server, token, title, job
        self.loop = asyncio.get_running_loop()
        self.begun = self.ended = False
        job.on_pass = self.report

    def report(self, passes: int, message: str) -> None:
        """From the model's thread: hand the report to the event loop."""
        self.loop.call_soon_threadsafe(self._send, f"pass {passes}: {message}")

    def _send(self, message: str) -> None:
        if self.ended:
            return  # a pass that finished after the request was answered
        progress = self.server.work_done_progress
        if not self.begun:
            self.begun = True
            progress.begin(self.token, types.WorkDoneProgressBegin(title=self.title, cancellable=True))
            cancelled = progress.tokens.get(self.token)
            if cancelled is not None and not cancelled.done():
                cancelled.add_done_callback(lambda _: self.job.cancel("cancelled from its progress"))
        progress.report(self.token, types.WorkDoneProgressReport(message=message))

    def end(self) -> None:
        self.ended = True
        if not self.begun:
            return
        job = self.job
        message = f"stopped after {job.passes} passes: {job.reason}" if job.stopped else f"done in {job.passes} passes"
        self.server.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))


class DcodeLanguageServer(LanguageServer):
    """dcode's language server: one warm model, the editor's buffers, the fills it made."""

    def __init__(self, flags: dict[str, Any]) -> None:
        super().__init__("dcode", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.config = ServerConfig(dict(flags))
        settings, _ = self.config.load()
        self.worker = ModelWorker(settings, self.config.flags)
        self.suggester = Suggester(self.worker)
        self.fills: dict[str, Fill] = {}  # per document, the last fill dcode made there
        self.shown_error: str | None = None
        self.progress_ids = itertools.count(1)

    # -- settings and messages -----------------------------------------------------------------
    def start_session(self, params: types.InitializeParams) -> None:
        folder = params.root_uri or (params.workspace_folders[0].uri if params.workspace_folders else None)
        root = to_fs_path(folder) if folder else params.root_path
        if root:
            self.config.root = Path(root)
        self.apply_settings(params.initialization_options, "initializationOptions")

    def apply_settings(self, value: Any, source: str) -> None:
        """The editor's settings, checked as the config file's are; bad ones are told and the
        server goes on with the settings it had."""
        try:
            settings, warnings = self.config.update(value, source)
        except InputError as err:
            self.tell_error(str(err))
            return
        self.worker.configure(settings, {**self.config.flags, **self.config.editor})
        self.shown_error = None
        for warning in warnings:
            self.window_log_message(types.LogMessageParams(type=types.MessageType.Warning, message=f"dcode: warning: {warning}"))

    def tell(self, message: str, kind: types.MessageType) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def tell_error(self, message: str, again: bool = True) -> None:
        line = f"dcode: error: {message.strip().splitlines()[0] if message.strip() else 'error'}"
        if again or line != self.shown_error:
            self.tell(line, types.MessageType.Error)
        self.shown_error = line

    def failed(self, err: InputError | WorkFailed, shown: bool) -> JsonRpcException:
        """The LSP error for a request that failed; `shown` tells the user too (a command they
        ran), as does a model that cannot be used (once until the message changes)."""
        message = str(err).strip().splitlines()[0] if str(err).strip() else "error"
        if shown or (isinstance(err, WorkFailed) and err.code == "model_unavailable"):
            self.tell_error(message, again=shown)
        return JsonRpcException(message, code=types.LSPErrorCodes.RequestFailed)

    # -- documents -------------------------------------------------------------------------------
    def publish_holes(self, uri: str) -> None:
        """A hint on every hole dcode can fill (none in a buffer it would refuse)."""
        try:
            buffer = open_buffer(self.workspace, uri)
            holes = buffer.holes() if buffer.path is not None else []
        except InputError:
            buffer, holes = None, []
        diagnostics = [
            types.Diagnostic(range=buffer.range(hole.start, hole.end), severity=types.DiagnosticSeverity.Hint,
                             source="dcode", code=hole.kind, message=HINTS.get(hole.kind, "dcode can fill this")
                             + (f": {hole.detail or hole.hint}" if hole.detail or hole.hint else ""))
            for hole in holes if buffer is not None
        ]
        version = buffer.version if buffer is not None else None
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics,
                                                                              version=version))

    def forget(self, uri: str) -> None:
        self.fills.pop(uri, None)
        self.suggester.forget(uri)
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    # -- model work --------------------------------------------------------------------------------
    def progress_for(self, job: Job, title: str, token: types.ProgressToken | None) -> PassProgress | None:
        return None if token is None else PassProgress(self, token, title, job)

    async def server_token(self) -> types.ProgressToken | None:
        window = self.client_capabilities.window
        if window is None or not window.work_done_progress:
            return None
        token = f"dcode-{next(self.progress_ids)}"
        await self.work_done_progress.create_async(token)
        return token

    async def suggestion(self, uri: str, position: types.Position, token: types.ProgressToken | None
                         ) -> tuple[Buffer, int, Answer]:
        try:
            buffer = open_buffer(self.workspace, uri)
            offset = buffer.offset(position)
            job = Job()
            progress = self.progress_for(job, "dcode: completing", token)
            try:
                answer = await self.suggester.suggest(buffer, offset, job)
            finally:
                if progress is not None:
                    progress.end()
        except (InputError, WorkFailed) as err:
            raise self.failed(err, shown=False) from None
        return buffer, offset, answer

    async def execute(self, command: str, arguments: list[Any]) -> types.WorkspaceEdit | None:
        """Run a dcode command: its proposal as a WorkspaceEdit, sent to the editor with
        `workspace/applyEdit` and returned; None when it was stopped."""
        try:
            uri, selection = command_target(arguments)
            buffer = open_buffer(self.workspace, uri)
            start, end = buffer.offset(selection.start), buffer.offset(selection.end)
            work = plan(command, buffer, start, end, self.fills.get(uri))
            job = Job()
            progress = self.progress_for(job, TITLES[command], await self.server_token())
            try:
                answer = await self.worker.run(lambda completer, job: completer.guarded(
                    lambda: {"proposal": work.work(completer, job)}), job)
            finally:
                if progress is not None:
                    progress.end()
            proposal = None if answer is None else checked(answer)["proposal"]
        except (InputError, WorkFailed) as err:
            raise self.failed(err, shown=True) from None
        if proposal is None:
            return None
        edit = buffer.workspace_edit(proposal.new_text(work.before), versioned=self.versioned_edits())
        await self.send_edit(edit, command, buffer, Fill.applied(proposal, work.before))
        told = list(proposal.notes)
        if proposal.problem and not any(proposal.problem in note for note in told):
            told.append(f"the proposal {proposal.problem}")
        if told:
            self.tell(f"dcode: {'; '.join(dict.fromkeys(told))}",
                      types.MessageType.Warning if proposal.problem else types.MessageType.Info)
        return edit

    def versioned_edits(self) -> bool:
        workspace = self.client_capabilities.workspace
        return bool(workspace and workspace.workspace_edit and workspace.workspace_edit.document_changes)

    async def send_edit(self, edit: types.WorkspaceEdit, command: str, buffer: Buffer, fill: Fill) -> None:
        """Ask the editor to apply the edit; remember the fill it applied, for refining."""
        workspace = self.client_capabilities.workspace
        if workspace is None or not workspace.apply_edit:
            return  # the client applies the command's result itself, if at all
        result = await self.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label=TITLES[command]))
        if result.applied:
            self.fills[buffer.uri] = fill
        else:
            reason = f" ({result.failure_reason})" if result.failure_reason else ""
            self.tell(f"dcode: the editor did not apply the edit{reason}; the document may have changed while "
                      "dcode worked: run the command again", types.MessageType.Warning)


def build_server(flags: dict[str, Any]) -> DcodeLanguageServer:
    logging.getLogger("pygls.protocol.json_rpc").addFilter(OneLineUserErrors())
    server = DcodeLanguageServer(flags)

    @server.feature(types.INITIALIZE)
    def initialize(ls: DcodeLanguageServer, params: types.InitializeParams) -> None:
        ls.start_session(params)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: DcodeLanguageServer, params: types.DidChangeConfigurationParams) -> None:
        ls.apply_settings(params.settings, "workspace/didChangeConfiguration")

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: DcodeLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.publish_holes(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: DcodeLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.publish_holes(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: DcodeLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.forget(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: DcodeLanguageServer, params: types.InlineCompletionParams
                                ) -> types.InlineCompletionList | None:
        buffer, offset, answer = await ls.suggestion(params.text_document.uri, params.position,
                                                     params.work_done_token)
        return None if answer.text is None else inline_items(buffer, offset, answer.text)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(ls: DcodeLanguageServer, params: types.CompletionParams) -> types.CompletionList | None:
        buffer, offset, answer = await ls.suggestion(params.text_document.uri, params.position,
                                                     params.work_done_token)
        return None if answer.text is None else completion_items(buffer, offset, answer.text)

    kinds = [types.CodeActionKind.QuickFix, types.CodeActionKind.RefactorRewrite]

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(code_action_kinds=kinds))
    def code_action(ls: DcodeLanguageServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        try:
            buffer = open_buffer(ls.workspace, params.text_document.uri)
        except InputError as err:
            raise ls.failed(err, shown=False) from None
        start, end = buffer.offset(params.range.start), buffer.offset(params.range.end)
        return code_actions(buffer, start, end, ls.fills.get(buffer.uri), params.range)

    for name in TITLES:
        server.command(name)(command_handler(name))

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: DcodeLanguageServer, params: None) -> None:
        ls.worker.close()

    return server


def command_handler(command: str):
    """The `workspace/executeCommand` handler of one dcode command."""

    async def handler(ls: DcodeLanguageServer, *arguments: Any) -> types.WorkspaceEdit | None:
        return await ls.execute(command, list(arguments))

    return handler
