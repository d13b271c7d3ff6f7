"""Rights: which users may pull, push, delete or administer which repositories.

A rule names users and groups (`@devs`; `*` is any signed-in user, `anonymous` is
everybody), repository globs (`team/*`, `*`) and actions; a user may do what any rule
grants. `admin` grants
everything on those repositories, and the catalog when a rule's glob is `*`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

ANONYMOUS = "anonymous"
ANY_USER = "*"


@dataclass(frozen=True, slots=True)
class Rule:
    users: frozenset[str]
    repositories: tuple[str, ...]
    actions: frozenset[str]

    def applies_to(self, user: str | None, groups: frozenset[str] = frozenset()) -> bool:
        if ANONYMOUS in self.users:
            return True
        return user is not None and (ANY_USER in self.users or user in self.users
                                     or any(f"@{g}" in self.users for g in groups))


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # group -> members

    def groups_of(self, user: str | None) -> frozenset[str]:
        if user is None:
            return frozenset()
        return frozenset(g for g, members in self.groups.items() if user in members)

    def actions(self, user: str | None, repository: str) -> frozenset[str]:
        """What `user` (None: not signed in) may do in `repository`."""
        granted: set[str] = set()
        groups = self.groups_of(user)
        for rule in self.rules:
            if rule.applies_to(user, groups) and any(fnmatchcase(repository, glob)
                                                     for glob in rule.repositories):
                granted |= rule.actions
        if "admin" in granted:
            granted |= {"pull", "push", "delete"}
        return frozenset(granted)

    def may_list_catalog(self, user: str | None) -> bool:
        groups = self.groups_of(user)
        return any(rule.applies_to(user, groups) and "admin" in rule.actions
                   and "*" in rule.repositories for rule in self.rules)
