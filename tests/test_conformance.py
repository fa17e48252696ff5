"""The conformance suite over every installed backend (built-in and backends/)."""

from anyexec.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    pass
