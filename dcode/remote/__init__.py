"""The model on a server (`endpoint`): `dcode serve`, llama.cpp, or an OpenAI-compatible engine
such as SGLang or vLLM. `model.connect` gives a `RemoteModel` the workflow uses in place of a
loaded one; `http` is the transport (timeouts, retries, one-line errors), `protocols` the wire
formats, `fields` the decoding fields of a dcode request, `pieces` the vocabulary-free tokenizer.
`dcode complete` through it is `dcode.complete.remote`."""
