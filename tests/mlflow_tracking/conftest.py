"""pytest configuration for the tracking suite: the `upstream_down` and `upstream_back` markers."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "upstream_down: runs after run.sh has stopped the MLflow upstream"
    )
    config.addinivalue_line(
        "markers", "upstream_back: runs after run.sh has started the MLflow upstream again"
    )
