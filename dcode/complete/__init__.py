"""`dcode complete`, the editor contract: llama.cpp `/infill` field names, answered by one warm model.

Request: `input_prefix`, `input_suffix`, `input_extra` ([{filename, text}]), `filename`,
`n_predict` (-1: up to the `max_tokens` setting), `temperature`, `seed`, `stop`, `instruction`,
`gather_context` (false: `input_extra` is the whole context and `filename` the path as given), and
dcode's decoding options `threshold`, `tokens_per_step`, `steps`, `block_size`, `top_p`,
`deadline_ms`, `min_tokens` (slots that must hold code, not end the hole) and `initial_tokens`
(the hole's first size). Unknown fields are ignored.
Response: llama.cpp's `content`, `tokens_predicted`, `tokens_evaluated`, `tokens_cached`,
`truncated`, `stop_type`, `stopping_word`, `generation_settings`, `timings` (llama.cpp's, plus
`forward_passes`), `model`, and dcode's own `dcode` {token_ids, spans, confidences,
forward_passes, chat_template}; on failure `error` {`code`, `message`} with a stable code:
  invalid_json, invalid_request, model_unavailable, internal_error.
An empty `content` is an answer, not an error (as with llama.cpp).

Modules: `request` (parsing and checking a request), `response` (the answer's fields, errors,
exit codes), `completer` (`Completer`: answers `dcode complete` in-process and every model
endpoint of `dcode serve`), `stdio` (requests on stdin, answers on stdout) and `remote` (the
same contract answered by an `endpoint`'s model). None imports torch until a model runs.
"""
