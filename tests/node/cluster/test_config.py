"""The cluster file: what it accepts and the errors it gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.cluster.config import ClusterConfig, Member, load, write


def test_round_trip(tmp_path: Path) -> None:
    config = ClusterConfig((Member("a", "127.0.0.1:1"), Member("b", "127.0.0.1:2"),
                            Member("c", "127.0.0.1:3")), replicas=3, write_quorum=2)
    write(tmp_path / "c.toml", config)
    assert load(tmp_path / "c.toml") == config


def test_defaults_are_two_copies_written_to_both(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(
        '[[members]]\nid="a"\naddress="h:1"\n[[members]]\nid="b"\naddress="h:2"\n'
        '[[members]]\nid="c"\naddress="h:3"\n')
    config = load(tmp_path / "c.toml")
    assert (config.replicas, config.write_quorum) == (2, 2)


@pytest.mark.parametrize(("text", "message"), [
    ("replicas = 2\n", "at least one member"),
    ('[[members]]\nid="a"\naddress="h:1"\n[[members]]\nid="a"\naddress="h:2"\n', "unique"),
    ('replicas = 3\n[[members]]\nid="a"\naddress="h:1"\n', "replicas must be between"),
    ('write_quorum = 3\n[[members]]\nid="a"\naddress="h:1"\n[[members]]\nid="b"\n'
     'address="h:2"\n', "write_quorum"),
    ('[[members]]\nid="a"\n', "needs an id and an address"),
    ("replica = 2\n", "unknown settings"),
    ("[[members]\n", "not valid TOML"),
    ('[tls]\ncert="x"\n[[members]]\nid="a"\naddress="h:1"\n', "needs cert, key and ca"),
])
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ValueError, match=message):
        load(tmp_path / "c.toml")
