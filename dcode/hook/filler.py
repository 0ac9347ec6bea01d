"""Where the hook's candidate fixes come from: a running `dcode serve`, else the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dcode.edit.files import splice_fill
from dcode.edit.targets import Target, scope_exit
from dcode.errors import InputError, NoEditError

if TYPE_CHECKING:  # torch is imported only once there is something to fix
    from dcode.model.loader import LoadedModel
    from dcode.server import ServerInfo
    from dcode.settings import Settings

RETRY_TEMPERATURE = 0.8


class HoleFiller:
    """Where the hook's candidates come from: a running `dcode serve` when one answers for this
    model (it stays warm across commits), else `load_model`'s: the model loaded in this process,
    or the configured `endpoint`'s (dcode.remote), which is then the only one tried. Both are reached
    on first use, so a commit with nothing to fix pays for neither; a server that stops answering
    is dropped for the rest of the run and the model is loaded here instead."""

    def __init__(
        self,
        settings: Settings,
        load_model: Callable[[], LoadedModel],
        find_server: Callable[[], ServerInfo | None] | None = None,
        token: str | None = None,
    ) -> None:
        self.settings = settings
        self._load_model = load_model
        self._find_server = find_server
        self.token = token
        self.server: ServerInfo | None = None
        self.model: LoadedModel | None = None
        self._token_counts: dict[str, int] = {}  # a region is measured for its size, then per attempt

    def _server(self) -> ServerInfo | None:
        if self._find_server is not None:
            self.server, self._find_server = self._find_server(), None
        return self.server

    def _local(self) -> LoadedModel:
        if self.model is None:
            self.model = self._load_model()
        return self.model

    def count_tokens(self, text: str) -> int:
        if text not in self._token_counts:
            self._token_counts[text] = self._count(text)
        return self._token_counts[text]

    def _count(self, text: str) -> int:
        if (server := self._server()) is not None:
            from dcode.server import tokenize_via_server

            ids = tokenize_via_server(server, text, self.token)
            if ids is not None:
                return len(ids)
            self.server = None
        return len(self._local().tokenizer.encode(text))

    def candidate(self, target: Target, attempt: int, max_lines: int | None = None) -> str | None:
        """One candidate text for the whole file, or None when the model produced nothing.
        Attempt 0 is the model's best guess; later ones are sampled under other seeds. `max_lines`
        bounds the fill (a repair inside one line writes no more than that line)."""
        if attempt == 0:
            overrides: dict[str, Any] = {"temperature": 0.0}
        else:
            overrides = {"temperature": RETRY_TEMPERATURE, "seed": self.settings.seed + attempt}
        if max_lines is not None:
            overrides["max_lines"] = max_lines
        if (server := self._server()) is not None:
            from dcode.server import complete_via_server

            response = complete_via_server(server, self._server_request(target, overrides), self.token)
            if response is not None and _error_code(response) != "internal_error":
                return _server_candidate(target, response)
            self.server = None
        return self._local_candidate(target, overrides)

    def _local_candidate(self, target: Target, overrides: dict[str, Any]) -> str | None:
        from dcode.edit.proposal import Proposal
        from dcode.workflow import propose_target

        try:
            for item in propose_target(target, "fill", self._local(), self.settings, **overrides):
                if isinstance(item, Proposal):
                    return None if item.problem else item.new_text(target.text)
        except NoEditError:
            return None
        return None

    def _server_request(self, target: Target, overrides: dict[str, Any]) -> dict[str, Any]:
        """The /infill request that decodes as `_local_candidate` would: the hook's own options,
        not the server's defaults; the server gathers the repository context."""
        from dcode.remote.fields import request_fields
        from dcode.workflow import fill_options

        options = fill_options(target, "fill", self.settings, self.count_tokens, **overrides)
        return {
            "input_prefix": target.text[: target.start], "input_suffix": target.text[target.end :],
            "filename": str(target.path.resolve()), **request_fields(options),
        }


def _error_code(response: dict) -> str | None:
    error = response.get("error")
    return error.get("code") if isinstance(error, dict) else None


def _server_candidate(target: Target, response: dict) -> str | None:
    """The whole file with the server's fill in the hole; its errors become ours."""
    from dcode.server import model_error

    if (err := model_error(response)) is not None:
        raise err
    if code := _error_code(response):
        raise InputError(str(response["error"].get("message") or code))
    content = response.get("content")
    if not isinstance(content, str):
        return None
    content = content[: scope_exit(target, content)]  # as propose_target cuts a local fill
    return splice_fill(target.text, target.start, target.end, content) if content.strip() else None
