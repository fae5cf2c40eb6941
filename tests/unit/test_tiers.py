"""The suite's tiers: markers given by tests/conftest.py from a test's folder and fixtures,
and the commands that run them (README's "Tests")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, pytest_collection_modifyitems


class Item:
    """What the hook reads of a collected test, and the markers it adds."""

    def __init__(self, path: str, *fixtures: str, marks: tuple[str, ...] = ()) -> None:
        self.path = ROOT / path
        self.fixturenames = ["stop_all_actors", *fixtures]
        self.marks = set(marks)

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.marks.add(mark.name)

    def get_closest_marker(self, name: str) -> object:
        return name if name in self.marks else None


def tiers(item: Item) -> set[str]:
    pytest_collection_modifyitems(None, [item])  # type: ignore[arg-type, list-item]
    return item.marks


@pytest.mark.parametrize(
    "item, marks",
    [
        (Item("tests/unit/test_decide.py"), {"fast"}),
        (Item("tests/unit/test_execution.py", marks=("slow",)), {"slow"}),
        (Item("tests/unit/test_outbox.py", "services"), {"services"}),
        (Item("tests/unit/test_outbox.py", marks=("services",)), {"services"}),
        (Item("tests/embedded/test_api.py", "flow"), set()),
        (Item("tests/ui/test_web_page.py", marks=("ui",)), {"ui"}),
        (Item("tests/integration/test_distributed.py", "cluster", "services"), {"services"}),
        (Item("tests/faults/test_worker_kills.py", "services", marks=("faults",)), {"faults", "services"}),
        (Item("tests/faults/test_service_restarts.py", marks=("exclusive",)), {"services", "exclusive"}),
    ],
    ids=[
        "unit",
        "unit-slow",
        "unit-services-fixture",
        "unit-services-mark",
        "embedded",
        "ui",
        "integration",
        "faults",
        "restarts",
    ],
)
def test_a_test_is_tiered_by_its_folder_and_its_use_of_the_services(item, marks):
    assert tiers(item) == marks


def test_only_the_tests_that_restart_the_shared_services_are_exclusive():
    """A fault test that kills its own cluster's processes may run beside others; one that
    restarts PostgreSQL or RabbitMQ, or changes the broker, may not."""
    import ast

    touching = ("rabbitmqctl", "pg_ctlcluster")
    for path in sorted((ROOT / "tests" / "faults").glob("test_*.py")):
        source = path.read_text()
        exclusive = "pytest.mark.exclusive" in source
        assert exclusive == any(word in source for word in touching), path.name
        assert ast.parse(source)  # readable


def test_the_tiers_commands_are_in_the_readme_and_the_test_command():
    readme = (ROOT / "README.md").read_text()
    script = (ROOT / "project_tests.sh").read_text()
    assert "./project_tests.sh --fast" in readme and "pytest -m fast" in readme
    assert '-m fast "${paths[@]}" "$@"' in script  # --fast, collecting tests/unit
    assert '-m "not exclusive" -n' in script and '-m exclusive "$@"' in script  # the two phases
    for marker in ("fast", "services", "exclusive"):
        assert any(line.strip().startswith(f'"{marker}:') for line in Path(ROOT / "pyproject.toml").open())


def test_test_files_are_named_after_what_they_test_not_after_a_review():
    """issue 22: a test file says its concept (``test_rate_limits.py``), not the review
    that found its defects (``test_limits_review.py``, ``*_hostile_review_*.py``)."""
    named = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("test_*.py")
        if "review" in path.stem or path.stem.endswith("_hostile")
    }
    assert named == set()


def test_embedded_flows_are_built_with_the_shared_helper():
    """issue 22, shared fixtures instead of copies: a test module's embedded flow, in any
    folder (``tests/api`` too), comes from ``tests.embedded.conftest.flow_of`` (definitions
    written, embedded settings, flow started), not from a copy of its three steps."""
    copies = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("test_*.py")
        if "EmbeddedFlow(Settings.from_env(" in path.read_text() and path != Path(__file__)
    ]
    assert copies == []


def test_file_weights_sum_each_files_wall_seconds_from_a_cpu_log():
    from tests.weights import weights_of

    log = "1.0 2.5 tests/a/test_x.py::test_one\n0.5 3.0 tests/a/test_x.py::test_two[1]\n0.1 0.2 tests/b/test_y.py::t\n"
    assert weights_of(log) == {"tests/a/test_x.py": 6}  # under half a second weighs nothing


def test_the_heaviest_files_are_collected_first():
    from tests.conftest import FILE_WEIGHTS

    assert FILE_WEIGHTS, "tests/weights.json is empty"
    heaviest = max(FILE_WEIGHTS, key=FILE_WEIGHTS.__getitem__)
    assert (ROOT / heaviest).is_file(), f"{heaviest} is in tests/weights.json but not in the tree"
    script = (ROOT / "project_tests.sh").read_text()
    assert "--dist loadfile --no-loadscope-reorder" in script  # else xdist reorders by test count
