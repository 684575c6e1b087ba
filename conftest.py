"""Repository root for pytest (the plugin itself loads through its `pytest11` entry point, named aiperf, or with
`-p pytest_aiperf.plugin` where it is not installed, as on a GPU machine that installs nothing): checks the plugin
is loaded, and sets the intra-op threads of a machine without a GPU."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if not (manager.has_plugin("aiperf") or manager.has_plugin("pytest_aiperf.plugin")):  # entry point, or -p by module
        raise pytest.UsageError("this repository's suites and tests need the pytest-aiperf plugin, which is not "
                                "loaded: install it (pip install -e .) and do not disable it (-p no:aiperf)")


@pytest.fixture(scope="session", autouse=True)
def one_intra_op_thread_without_a_gpu():
    """Without a GPU the suites and the kernels' tests only verify tiny shapes, whose ops last microseconds, so
    torch's intra-op threads only contend (on CI's 2 cores with two xdist workers the serving engine's tests took
    6 s with one thread, 28 s with two). Each worker then runs with one; a GPU machine is left as it is (the
    plugin keeps the measuring thread and torch's pool on the CPUs it chose)."""
    import torch

    if torch.cuda.is_available():
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
