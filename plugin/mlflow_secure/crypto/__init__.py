"""Client-side artefact encryption: the file format and its safe recipes.

`artefact` is what callers use (encrypt a file for a project's artefact, decrypt it whole
or by byte range); `header` is the key-committing envelope header and the associated data;
`segments` is Tink's AES-GCM-HKDF streaming format written with `cryptography`. The format is
specified, with test vectors, in docs/encryption-format.md.
"""
