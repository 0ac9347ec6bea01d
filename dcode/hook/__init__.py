"""Git pre-commit fix-ups: fill marked holes and repair syntax errors in staged files.

`dcode hook run` is the hook entry. For each staged file in a language with a grammar it

* fills every `dcode: fill` marker; a marker inside a stub body (`pass`, `...`,
  `raise NotImplementedError`, `todo!()`, ...) stands for the whole body, so the stub goes too.
  Stub bodies without a marker are intentional and never touched;
* repairs syntax errors by re-masking the broken region and denoising again, up to
  `max_attempts` times per region (attempt 0 greedy, later ones sampled with other seeds).
  A repair may rewrite the region but not delete most of it, and a region too long for the
  hole to hold is left to the user: either would silently drop code.

Verification: every candidate is judged by re-parsing the WHOLE file (tree-sitter: ERROR and
MISSING nodes; Python also `compile()`). A fill must not add errors or markers, a repair must
remove an error region, and the file is written only when the final text parses cleanly. An
unverified fix is never written: the file is left as is and reported.

Python files that `compile()` accepts although tree-sitter reports errors (the grammar lags the
language) are never "repaired"; their markers are still filled.

Partially staged files (the working tree differs from the index) are skipped with a message:
fixing the working tree would mix a fix of unstaged code into what the user stages next, and
fixing the staged blob would mean writing the index (the hook never stages) and merging the fix
into the unstaged edits, which can conflict. Only the staged content is examined, so the message
appears only when what would be committed needs fixing.

Candidates come from a running `dcode serve` for the same model when there is one (no model load
per commit), else from the model loaded in-process; see `HoleFiller`.

The hook never stages or commits. It writes the fixed files through one undo-journal entry
(`dcode undo` reverts the whole run), prints a summary and `git add` advice on stderr, and exits
1 when it changed something (the pre-commit convention), else 0. What it could not fix (a broken
region no candidate repaired, a marker left unfilled, a partially staged file whose staged
content needs work) also exits 1 with the reason, as ruff fails on what it could not fix: broken
code is not committed quietly; `warn_only` makes that a warning. With a `review` (`hook run
--review`), the fixes of all files are one change the user takes whole, by hunk, or not at all.
No model or device: a warning and exit 0, or exit 3 with `strict`.

Modules: `fix` (one file's holes filled and repaired in memory, every candidate verified),
`filler` (where candidates come from: a running `dcode serve` or the model), `repo` (git: staged
files, partial staging), `run` (the hook run and its report), `install` (the pre-commit script)
and `cli` (`dcode hook ...`). The whole-file check itself is `dcode.edit.check`.
"""
