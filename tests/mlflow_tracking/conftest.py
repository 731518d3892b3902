"""pytest configuration for the tracking suite: the `upstream_down` marker."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "upstream_down: runs after run.sh has stopped the MLflow upstream"
    )
