"""pytest hooks of pytest-aiperf: options, markers, parametrization, the ``aiperf`` fixture, and reporting.

Only wiring lives here; the state is one ``AiperfSession`` in ``config.stash``. Importing this module imports
neither torch nor CUDA: the xdist controller never holds a GPU context.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from pytest_aiperf import benchexport, expectations, machine, report, watchdog, workers
from pytest_aiperf.cases import Case, CaseParam, chapter_of
from pytest_aiperf.reporter import DURATIONS, LongestFirst, Reporter, cached_durations
from pytest_aiperf.session import AiperfSession, Options, Skip
from pytest_aiperf.verdict import ImprovedBeyondExpectation, InconclusiveMeasurement

SESSION = pytest.StashKey[AiperfSession]()
RECORD = pytest.StashKey[dict]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_aiperf import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aiperf", "performance pairs (pytest-aiperf)")
    group.addoption("--update-expectations", dest="aiperf_update", nargs="?", const="all", default=None,
                    choices=["all", "new", "add"], metavar="all|new|add",
                    help="record the measured speedups of the selected cases that pass correctness into "
                         "expectations/<hardware>/: 'all' replaces entries, 'new' records only cases without one, "
                         "'add' pools this run with the recordings already there (run it in fresh processes, "
                         "ideally on other machines, so the margin covers their spread). Default: off.")
    group.addoption("--aiperf-hardware", dest="aiperf_hardware", default=None, metavar="KEY",
                    help="expectations key of this machine (default: from the GPU's NVML name, e.g. h100).")
    group.addoption("--aiperf-strict", dest="aiperf_strict", action="store_true",
                    help="fail INCONCLUSIVE cases (noise or throttling) instead of passing them with a warning.")
    group.addoption("--aiperf-budget", dest="aiperf_budget", type=float, default=None, metavar="SECONDS",
                    help="sampling budget per case (default: ini aiperf_budget, 3.0).")
    group.addoption("--aiperf-backend", dest="aiperf_backend", default="auto", choices=["auto", "cuda", "cpu"],
                    help="timing backend: cuda events, or the host clock (cpu). Default: 'auto' (cuda when present, "
                         "else verify correctness only and skip timing).")
    group.addoption("--aiperf-host-cpus", dest="aiperf_host_cpus", default="fast", choices=["fast", "all"],
                    help="'fast' (default) keeps the measuring thread, and torch's intra-op pool, on the faster half of "
                         "the host CPUs by kernel-launch latency, measured at start; 'all' leaves them as they are.")
    group.addoption("--aiperf-timeout", dest="aiperf_timeout", type=float, default=None, metavar="SECONDS",
                    help="time limit per case (default: ini aiperf_timeout, 300; 0: none). A case past it (a hung "
                         "kernel) ends the run with exit 124, after the cases that finished are reported and recorded.")
    group.addoption("--aiperf-share-gpus", dest="aiperf_share_gpus", action="store_true",
                    help="allow more xdist workers than GPUs; workers sharing a GPU take turns measuring.")
    group.addoption("--aiperf-order", dest="aiperf_order", default="longest-first",
                    choices=["longest-first", "collected"],
                    help="under xdist, the order in which tests are handed to workers: 'longest-first' (default) by "
                         "each test's duration in the last run, kept in pytest's cache (tests without one go first), "
                         "so the run does not end on one worker with a long case; 'collected': as collected.")
    parser.addini("aiperf_budget", "sampling budget per case in seconds", type="string", default="3.0")
    parser.addini("aiperf_timeout", "time limit per case in seconds (0: none)", type="string", default="300")
    parser.addini("aiperf_min_margin", "smallest noise margin an expectation may record", type="string", default="0.03")
    parser.addini("aiperf_expectations", "folder of expectation files, relative to the rootdir", default="expectations")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "perf_pair(*cases, chapter=None): parametrize the test's `pair` argument with "
                                       "the baseline/optimized Cases given; each case also gets the `perf` marker; "
                                       "chapter names the expectations file (default: from the module path)")
    config.addinivalue_line("markers", "perf: a baseline/optimized performance pair (select with -m perf)")
    config.addinivalue_line("markers", "multigpu: a pair that uses several GPUs together (distributed ranks or one "
                                       "process driving several); deselect with -m 'perf and not multigpu'")
    options = Options(update=config.getoption("aiperf_update"), strict=config.getoption("aiperf_strict"),
                      hardware=config.getoption("aiperf_hardware"), backend=config.getoption("aiperf_backend"),
                      budget_s=config.getoption("aiperf_budget") or float(config.getini("aiperf_budget")),
                      min_margin=float(config.getini("aiperf_min_margin")),
                      expectations_dir=Path(config.getini("aiperf_expectations")),
                      host_cpus=config.getoption("aiperf_host_cpus"),
                      timeout_s=_timeout(config), xdist_worker=hasattr(config, "workerinput"))
    session = AiperfSession(options, Path(config.rootpath),
                            custom_backend=config.hook.pytest_aiperf_backend(config=config))
    session.watchdog = watchdog.Watchdog(partial(_on_hang, config))
    config.stash[SESSION] = session
    try:
        session.store()
    except expectations.ExpectationsError as err:
        raise pytest.UsageError(str(err)) from None
    if not hasattr(config, "workerinput"):
        specs = getattr(config.option, "tx", None) or []
        error = workers.count_error(len(specs), session.gpus, config.getoption("aiperf_share_gpus"))
        if error and config.getoption("dist", "no") != "no":
            raise pytest.UsageError(error)
        session.last_durations = cached_durations(config)
        config.pluginmanager.register(Reporter(config, session), "aiperf-reporter")
    elif config.workerinput.get(DURATIONS):
        config.pluginmanager.register(LongestFirst(config.workerinput[DURATIONS]), "aiperf-longest-first")


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    gpus = machine.visible_gpus() if config.getoption("aiperf_backend") != "cpu" else []
    return workers.auto_count(gpus, os.environ)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config, specs: list[Any]) -> None:
    workers.pin([spec.env for spec in specs], config.stash[SESSION].gpus)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Every worker gets the durations the controller read once, so all of them sort their collection alike."""
    if node.config.getoption("aiperf_order") == "longest-first":
        node.workerinput[DURATIONS] = node.config.stash[SESSION].last_durations


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("perf_pair")
    if marker is None:
        return
    cases = list(marker.args)
    bad = [c for c in cases if not isinstance(c, Case)]
    if bad or not cases:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: perf_pair takes Case objects, got {bad or 'none'}")
    params = [p for c in cases for p in c.params()]
    ids = [p.id for p in params]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: duplicate case ids {dupes}")
    metafunc.parametrize("pair", params, ids=ids)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    session = config.stash[SESSION]
    for item in items:
        param = getattr(getattr(item, "callspec", None), "params", {}).get("pair")
        if isinstance(param, CaseParam) and item.get_closest_marker("perf_pair"):
            item.add_marker(pytest.mark.perf)
            if param.gpus > 1:
                item.add_marker(pytest.mark.multigpu)
            session.kernel_dirs.add(_kernel_dir(item))
            if not item.get_closest_marker("perf_pair").kwargs.get("chapter"):
                session.known.setdefault(_chapter(item), set()).add(param.id)


class Aiperf:
    """The ``aiperf`` fixture: ``aiperf.run(pair)`` checks, measures and judges one case, and returns its record."""

    def __init__(self, request: pytest.FixtureRequest, session: AiperfSession) -> None:
        self._request, self._session = request, session

    def run(self, pair: CaseParam) -> dict[str, Any]:
        __tracebackhide__ = True
        item = self._request.node
        self._session.watchdog.arm(item.nodeid, self._session.options.timeout_s)
        try:
            rec = self._session.run(pair, nodeid=item.nodeid, module=_relpath(item.config, item),
                                    func=getattr(item, "originalname", item.name), chapter=_chapter(item))
        except Skip as why:
            pytest.skip(str(why))
        finally:
            self._session.watchdog.disarm()
        item.stash[RECORD] = rec
        item.user_properties.extend(benchexport.junit_properties(rec))
        outcome = rec["verdict"]
        if self._session.options.update is not None:
            return rec
        if outcome == "REGRESSED" or (outcome == "INCONCLUSIVE" and self._session.options.strict):
            pytest.fail(f"{outcome}: {rec['reason']}", pytrace=False)
        if outcome == "IMPROVED":
            warnings.warn(ImprovedBeyondExpectation(f"{pair.id}: {rec['reason']}"), stacklevel=2)
        elif outcome == "INCONCLUSIVE":
            warnings.warn(InconclusiveMeasurement(f"{pair.id}: {rec['reason']}"), stacklevel=2)
        return rec


@pytest.fixture
def aiperf(request: pytest.FixtureRequest) -> Aiperf:
    """Check, measure and judge a baseline/optimized pair: ``aiperf.run(pair)``."""
    return Aiperf(request, request.config.stash[SESSION])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if call.when == "call" and RECORD in item.stash:
        rep.aiperf = item.stash[RECORD]
    return rep


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash[SESSION]
    gpus = session.gpus
    known = not gpus or session.options.hardware is not None or machine.is_known(gpus[0].name)
    lines = [report.header_line(session.hardware, session.timing_name,
                                str(session.options.expectations_dir / session.hardware), known)]
    if config.getoption("dist", "no") != "no" and config.getoption("aiperf_order") == "longest-first":
        lines.append(report.order_line(len(session.last_durations), getattr(config, "cache", None) is not None))
    return lines


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        config.workeroutput["aiperf_known"] = {k: sorted(v) for k, v in config.stash[SESSION].known.items()}


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info["gpu"] = machine.static_info()


def _timeout(config: pytest.Config) -> float:
    option = config.getoption("aiperf_timeout")
    seconds = option if option is not None else float(config.getini("aiperf_timeout"))
    if seconds < 0:
        raise pytest.UsageError(f"--aiperf-timeout must be 0 (no limit) or positive, got {seconds:g}")
    return seconds


def _on_hang(config: pytest.Config, label: str, seconds: float) -> None:
    """The watchdog's last words (on its own thread; the process ends after this): what hung, every thread's
    stack, and in the reporting process the expectation updates and the summary of the cases that finished."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)
    session = config.stash[SESSION]
    terminal = config.pluginmanager.getplugin("terminalreporter")
    text = watchdog.message(label, seconds, len(session.records))
    if terminal is not None:
        terminal.write_line("")
        terminal.write_line(text, red=True, bold=True)
        terminal.flush()
    print(text, file=sys.__stderr__, flush=True)
    faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
    reporter = config.pluginmanager.get_plugin("aiperf-reporter")
    if reporter is not None and terminal is not None:
        session.finish()
        terminal.section("aiperf (cases that finished)")
        reporter.write_summary(terminal)
        terminal.flush()


def _chapter(item: pytest.Item) -> str:
    """The expectations file of an item: ``perf_pair(..., chapter=...)``, else from the module's path."""
    marker = item.get_closest_marker("perf_pair")
    return (marker.kwargs.get("chapter") if marker else None) or chapter_of(_relpath(item.config, item))


def _kernel_dir(item: pytest.Item) -> Path:
    """``suites/ch07/test_x.py`` -> ``<rootdir>/kernels/ch07``: where the case's CUDA sources live."""
    parts = Path(_relpath(item.config, item)).parts
    return item.config.rootpath.joinpath("kernels", *parts[1:-1]) if parts[:1] == ("suites",) else Path(item.path).parent


def _relpath(config: pytest.Config, item: pytest.Item) -> str:
    path = Path(str(item.path))
    try:
        return path.relative_to(config.rootpath).as_posix()
    except ValueError:
        return path.name
