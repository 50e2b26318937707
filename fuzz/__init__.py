"""Coverage-guided fuzzing of iceagent's decoders (issue 12 item 7).

`fuzz.targets` holds one plain-Python function per decoder (importable without atheris, replayed over
`tests/corpus/` by the test suite); `python -m fuzz.run TARGET` drives one of them under atheris.
"""
