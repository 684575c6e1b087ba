"""pytest hooks of pytest-aiperf: options, markers, parametrization, the ``aiperf`` fixture, and reporting.

Only wiring lives here. Each process role owns its state: every collecting process a ``Collection``, the measuring
process a ``pipeline.Measurer`` (made on the first case), the reporting process a ``reporter.Reporter``. The plugin
acts only where perf cases are collected, or where the run asked for it before collection (``options.opted_in``):
in any other pytest run of the environment its hooks change nothing. Importing this module imports neither torch
nor CUDA: the xdist controller never holds a GPU context.
"""

from __future__ import annotations

import os
import warnings
from functools import partial
from typing import Any

import pytest

from pytest_aiperf import (benchexport, device, ending, evidence, expectations, html_output, machine, options,
                           report, watchdog, workers)
from pytest_aiperf.cases import Case, CaseParam
from pytest_aiperf.collection import Collection, chapter, kernel_dir, relpath
from pytest_aiperf.pipeline import Location, Measurer
from pytest_aiperf.reporter import DURATIONS, LongestFirst, Reporter, cached_durations
from pytest_aiperf.verdict import ImprovedBeyondExpectation, InconclusiveMeasurement

OPTIONS = pytest.StashKey[options.Options]()
COLLECTION = pytest.StashKey[Collection]()
MEASURER = pytest.StashKey[Measurer]()
WATCHDOG = pytest.StashKey[watchdog.Watchdog]()
HARDWARE = pytest.StashKey[str]()
RECORD = pytest.StashKey[dict]()
DEFAULTS = {"aiperf_update": None, "aiperf_hardware": None, "aiperf_strict": False, "aiperf_budget": None,
            "aiperf_backend": "auto", "aiperf_host_cpus": "fast", "aiperf_timeout": None,
            "aiperf_share_gpus": False, "aiperf_html": None, "aiperf_profile": "off"}


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_aiperf import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aiperf", "performance pairs (pytest-aiperf)")
    group.addoption("--update-expectations", dest="aiperf_update", nargs="?", const="all", default=None,
                    choices=["all", "new", "add"], metavar="all|new|add",
                    help="record the measured speedups of the selected cases that pass correctness into "
                         "expectations/<hardware>/, each as soon as its case finishes: 'all' replaces entries, "
                         "'new' records only cases without one, 'add' pools this run with the recordings already "
                         "there (run it in fresh processes, ideally on other machines, so the margin covers their "
                         "spread). Default: off.")
    group.addoption("--aiperf-hardware", dest="aiperf_hardware", default=None, metavar="KEY", type=options.hardware,
                    help="expectations key of this machine (default: from the GPU's NVML name, e.g. h100).")
    group.addoption("--aiperf-strict", dest="aiperf_strict", action="store_true",
                    help="fail INCONCLUSIVE cases (noise or throttling) instead of passing them with a warning.")
    group.addoption("--aiperf-budget", dest="aiperf_budget", type=options.budget, default=None, metavar="SECONDS",
                    help=f"sampling budget per case, positive (default: ini aiperf_budget, {options.DEFAULT_BUDGET_S}).")
    group.addoption("--aiperf-backend", dest="aiperf_backend", default="auto", choices=["auto", "cuda", "cpu"],
                    help="timing backend: cuda events, or the host clock (cpu). Default: 'auto' (cuda when present, "
                         "else verify correctness only and skip timing). 'cuda' without a GPU is an error.")
    group.addoption("--aiperf-host-cpus", dest="aiperf_host_cpus", default="fast", choices=["fast", "all"],
                    help="'fast' (default) keeps the measuring thread, and torch's intra-op pool, on the faster half of "
                         "the host CPUs by kernel-launch latency, measured at start; 'all' leaves them as they are.")
    group.addoption("--aiperf-timeout", dest="aiperf_timeout", type=options.timeout, default=None, metavar="SECONDS",
                    help=f"time limit per case (default: ini aiperf_timeout, {options.DEFAULT_TIMEOUT_S}; 0: none). A "
                         "case past it (a hung kernel) ends the run with exit 124, after the cases that finished are "
                         "reported and recorded.")
    group.addoption("--aiperf-share-gpus", dest="aiperf_share_gpus", action="store_true",
                    help="allow more xdist workers than GPUs; workers sharing a GPU take turns measuring.")
    group.addoption("--aiperf-order", dest="aiperf_order", default="longest-first",
                    choices=["longest-first", "collected"],
                    help="under xdist, the order in which tests are handed to workers: 'longest-first' (default) by "
                         "each test's duration in the last run, kept in pytest's cache (tests without one go first), "
                         "so the run does not end on one worker with a long case; 'collected': as collected.")
    group.addoption("--aiperf-html", dest="aiperf_html", default=None, metavar="PATH",
                    help="write a self-contained HTML report of the measured cases to PATH when the run ends (also "
                         "when the watchdog or SIGTERM ends it): verdicts, speedups against their bands, the "
                         "roofline, each case's recording history. Default: none.")
    group.addoption("--aiperf-profile", dest="aiperf_profile", default="off", choices=list(evidence.MODES),
                    help="'regressed': profile one call of each arm of a REGRESSED case with torch.profiler (Chrome "
                         "traces beside the --aiperf-html report, else in .aiperf/traces/) and name in its failure "
                         "the kernels whose time changed most since the profile recorded with its expectation; with "
                         "--update-expectations every recorded case is profiled. 'all': every case. Default: 'off'.")
    parser.addini("aiperf", "this project has performance pairs: act in every run, xdist workers included, before "
                            "any perf case is collected", type="bool", default=False)
    parser.addini("aiperf_budget", "sampling budget per case in seconds", type="string",
                  default=options.DEFAULT_BUDGET_S)
    parser.addini("aiperf_timeout", "time limit per case in seconds (0: none)", type="string",
                  default=options.DEFAULT_TIMEOUT_S)
    parser.addini("aiperf_min_margin", "smallest noise margin an expectation may record", type="string", default="0.03")
    parser.addini("aiperf_expectations", "folder of expectation files, relative to the rootdir", default="expectations")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "perf_pair(*cases, chapter=None): parametrize the test's `pair` argument with "
                                       "the baseline/optimized Cases given; each case also gets the `perf` marker; "
                                       "chapter names the expectations file (default: from the module path)")
    config.addinivalue_line("markers", "perf: a baseline/optimized performance pair (select with -m perf)")
    config.addinivalue_line("markers", "multigpu: a pair that uses several GPUs together (distributed ranks or one "
                                       "process driving several); deselect with -m 'perf and not multigpu'")
    config.stash[OPTIONS] = opts = options.from_config(config)
    config.stash[COLLECTION] = Collection()
    config.stash[WATCHDOG] = watchdog.Watchdog(partial(ending.on_hang, config))
    if opts.backend == "cuda" and not hasattr(config, "workerinput") and not _custom(config) \
            and not device.visible_gpus(opts):
        raise pytest.UsageError("--aiperf-backend=cuda, but no CUDA GPU is visible (NVML lists none in "
                                "CUDA_VISIBLE_DEVICES): nothing could be timed, and a run that skips every case must "
                                "not pass. Use --aiperf-backend=auto to verify correctness only on this machine")
    if hasattr(config, "workerinput"):
        if config.workerinput.get(DURATIONS):
            config.pluginmanager.register(LongestFirst(config.workerinput[DURATIONS]), "aiperf-longest-first")
        return
    gpus = device.visible_gpus(opts) if options.opted_in(config, DEFAULTS) else []
    error = workers.count_error(len(getattr(config.option, "tx", None) or []), gpus,
                                config.getoption("aiperf_share_gpus"))
    if error and config.getoption("dist", "no") != "no":
        raise pytest.UsageError(error)
    reporter = Reporter(config, opts, config.stash[COLLECTION], hardware=partial(_hardware, config),
                        last_durations=cached_durations(config))
    config.pluginmanager.register(reporter, "aiperf-reporter")
    html_output.register(config)
    if options.opted_in(config, DEFAULTS):
        ending.SigtermInterrupts.install(config, config.stash[WATCHDOG])


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    if not options.opted_in(config, DEFAULTS) or config.getoption("aiperf_backend") == "cpu":
        return None
    return workers.auto_count(machine.visible_gpus(), os.environ)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config, specs: list[Any]) -> None:
    if options.opted_in(config, DEFAULTS):
        workers.pin([spec.env for spec in specs], device.visible_gpus(config.stash[OPTIONS]))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Every worker gets the durations the controller read once, so all of them sort their collection alike."""
    reporter = node.config.pluginmanager.get_plugin("aiperf-reporter")
    if node.config.getoption("aiperf_order") == "longest-first" and reporter is not None:
        node.workerinput[DURATIONS] = reporter.last_durations


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
    if not marker.kwargs.get("chapter"):
        metafunc.config.stash[COLLECTION].declare(chapter(metafunc.definition), ids)
    metafunc.parametrize("pair", params, ids=ids)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    collection = config.stash[COLLECTION]
    for item in items:
        param = getattr(getattr(item, "callspec", None), "params", {}).get("pair")
        if isinstance(param, CaseParam) and item.get_closest_marker("perf_pair"):
            item.add_marker(pytest.mark.perf)
            if param.gpus > 1:
                item.add_marker(pytest.mark.multigpu)
            collection.add_item(chapter(item), kernel_dir(item))
    if collection.perf_items and not hasattr(config, "workerinput"):
        _validate_expectations(config, collection.chapters)
        ending.SigtermInterrupts.install(config, config.stash[WATCHDOG])


def _validate_expectations(config: pytest.Config, chapters: set[str]) -> None:
    """Read the collected chapters' expectation files now, so an unusable one stops the run before any case."""
    opts = config.stash[OPTIONS]
    try:
        expectations.validate(config.rootpath / opts.expectations_dir, _hardware(config), chapters,
                              lenient=opts.update is not None)
    except expectations.ExpectationsError as err:
        raise pytest.UsageError(str(err)) from None


class Aiperf:
    """The ``aiperf`` fixture: ``aiperf.run(pair)`` checks, measures and judges one case, and returns its record."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    def run(self, pair: CaseParam) -> dict[str, Any]:
        __tracebackhide__ = True
        item, config = self._request.node, self._request.config
        opts = config.stash[OPTIONS]
        where = Location(nodeid=item.nodeid, module=relpath(item),
                         func=getattr(item, "originalname", item.name), chapter=chapter(item))
        config.stash[WATCHDOG].arm(item.nodeid, watchdog.limit(opts.timeout_s, distributed=pair.world > 1), item)
        try:
            rec = _measurer(config).run(pair, where)
        except device.Skip as why:
            pytest.skip(str(why))
        finally:
            config.stash[WATCHDOG].disarm()
        item.stash[RECORD] = rec
        item.user_properties.extend(benchexport.junit_properties(rec))
        outcome = rec["verdict"]
        if opts.update is not None:
            return rec
        if outcome == "REGRESSED" or (outcome == "INCONCLUSIVE" and opts.strict):
            pytest.fail(f"{outcome}: {rec['reason']}", pytrace=False)
        if outcome == "IMPROVED":
            warnings.warn(ImprovedBeyondExpectation(f"{pair.id}: {rec['reason']}"), stacklevel=2)
        elif outcome == "INCONCLUSIVE":
            warnings.warn(InconclusiveMeasurement(f"{pair.id}: {rec['reason']}"), stacklevel=2)
        return rec


@pytest.fixture
def aiperf(request: pytest.FixtureRequest) -> Aiperf:
    """Check, measure and judge a baseline/optimized pair: ``aiperf.run(pair)``."""
    return Aiperf(request)


def _measurer(config: pytest.Config) -> Measurer:
    """This process's measuring role, made on the first case it measures."""
    if MEASURER not in config.stash:
        opts, collection = config.stash[OPTIONS], config.stash[COLLECTION]
        config.stash[MEASURER] = Measurer(opts, device.Device(opts, config.rootpath, _custom(config),
                                                              kernel_dirs=lambda: collection.kernel_dirs))
    return config.stash[MEASURER]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if call.when == "call" and RECORD in item.stash:
        rep.aiperf = item.stash[RECORD]
    return rep


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not options.opted_in(config, DEFAULTS):
        return []
    opts = config.stash[OPTIONS]
    gpus = device.visible_gpus(opts)
    known = not gpus or opts.hardware is not None or machine.is_known(gpus[0].name)
    lines = [report.header_line(_hardware(config), device.timing_name(opts, gpus, _custom(config)),
                                str(opts.expectations_dir / _hardware(config)), known)]
    reporter = config.pluginmanager.get_plugin("aiperf-reporter")
    if config.getoption("dist", "no") != "no" and config.getoption("aiperf_order") == "longest-first" and reporter:
        lines.append(report.order_line(len(reporter.last_durations), getattr(config, "cache", None) is not None))
    return lines


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        config.workeroutput["aiperf_known"] = {k: sorted(v) for k, v in config.stash[COLLECTION].known.items()}


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info["gpu"] = machine.static_info()


def _custom(config: pytest.Config) -> Any:
    """A timing backend from a ``pytest_aiperf_backend`` implementation, asked once per process."""
    key = "_aiperf_custom_backend"
    if not hasattr(config, key):
        setattr(config, key, config.hook.pytest_aiperf_backend(config=config))
    return getattr(config, key)


def _hardware(config: pytest.Config) -> str:
    """The run's expectations key, asked of NVML once per process and only when needed."""
    if HARDWARE not in config.stash:
        opts = config.stash[OPTIONS]
        gpus = device.visible_gpus(opts) if not opts.hardware else []
        config.stash[HARDWARE] = device.hardware_key(opts, gpus, _custom(config))
    return config.stash[HARDWARE]
