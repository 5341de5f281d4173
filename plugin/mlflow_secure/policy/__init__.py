"""The policy engine: OPA connection and client, managed OPA, toolchain, revision,
shadow mode, decision cache, explain."""
