"""Who may do what: users from an htpasswd file, rights from a policy, and the docker
token protocol (a /token endpoint issuing short-lived ES256 JWTs; Basic accepted too).

Off unless `shoal serve --auth FILE` names a configuration (docs/auth.md shows one).
"""
