"""`shoal push` and `shoal pull`: a plain OCI distribution client over HTTP, for any
registry, moving images between a registry and a local OCI layout or image tarball."""
