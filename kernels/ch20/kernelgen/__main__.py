"""``python -m kernels.ch20.kernelgen``: the kernel generator's command line.

    --emit PATH --family F [--params K=V,...|--candidate NAME] [--target hidden=4096] [--hardware h200]
    list                      families, their spaces, and how many candidates pass the static constraints
    render --family F --params K=V,...          print one rendering (how golden files are regenerated)
    check --family F [--target ...]             compile, ptxas and CPU-verify the family's defaults
    search --family F [--seed N] [--rung-s S] [--final-s S] [--no-promote] [--log PATH]   (needs a GPU)

Without a GPU, candidates are compiled for sm_90a (``AIPERF_CUDA_ARCH``, as CI does). Exit status 1 with the
reasons when nothing can be emitted or nothing passes; 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from kernels.ch20.kernelgen import constraints, emit, registry, render, search
from kernels.ch20.kernelgen.families import FAMILIES, family
from kernels.ch20.kernelgen.space import Candidate

COMMANDS = ("list", "render", "check", "search", "emit")


def _target(fam_target: dict[str, int], text: str | None) -> dict[str, int]:
    if not text:
        return dict(fam_target)
    pairs = dict(item.split("=", 1) for item in text.split(",") if "=" in item)
    if sorted(pairs) != sorted(fam_target):
        raise ValueError(f"--target names {sorted(fam_target)} (e.g. {next(iter(fam_target))}=4096), got {text!r}")
    return {k: int(v) for k, v in pairs.items()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kernels.ch20.kernelgen",
                                     description="Template search for CUDA kernels (no language model).")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="families and their spaces")
    for name in ("render", "check", "search", "emit"):
        sub = commands.add_parser(name)
        sub.add_argument("--family", required=True, choices=sorted(FAMILIES))
        sub.add_argument("--target", help="the shape class, e.g. hidden=4096 (default: the family's)")
        if name in ("render", "emit"):
            sub.add_argument("--params", help="NAME=VALUE,... for every parameter of the family's space")
            sub.add_argument("--candidate", help="a candidate's full name, as a search log spells it")
        if name in ("emit", "search"):
            sub.add_argument("--registry", type=Path, default=registry.DEFAULT)
        if name == "emit":
            sub.add_argument("--emit", type=Path, required=True, metavar="PATH", help="where to write the .cu")
            sub.add_argument("--hardware", help="whose promoted kernel (default: the only one recorded)")
        if name == "search":
            defaults = search.Policy()
            sub.add_argument("--seed", type=int, default=defaults.seed)
            sub.add_argument("--sample", type=int, default=defaults.sample)
            sub.add_argument("--rung-s", type=float, default=defaults.rung_s)
            sub.add_argument("--final-s", type=float, default=defaults.final_s)
            sub.add_argument("--no-promote", action="store_true", help="search and log, write nothing else")
            sub.add_argument("--log", type=Path, help="the search log's JSON (default: kernels/ch20/generated/)")
    return parser


def _named(args: argparse.Namespace, fam_target: dict[str, int]) -> Candidate | None:
    fam = family(args.family)
    if args.params and args.candidate:
        raise ValueError("--params and --candidate both name a candidate: give one")
    if args.params:
        return fam.candidate(fam.space.parse_assignments(args.params), fam_target)
    if args.candidate:
        return fam.named(args.candidate, fam_target)
    return None


def _list() -> int:
    for fam in FAMILIES.values():
        valid = sum(not constraints.static_reasons(fam, c) for c in fam.candidates())
        print(f"{fam.name}: {fam.space.size} candidates, {valid} pass the static constraints at {dict(fam.target)}; "
              f"launcher {fam.launcher}")
        for p in fam.space.params:
            print(f"  {p.name} {list(p.choices)}: {p.doc}")
    return 0


def _check(fam_name: str, fam_target: dict[str, int]) -> int:
    fam = family(fam_name)
    tried = [fam.candidate(p, fam_target) for p in fam.defaults]
    builds, reasons = emit.check(fam, tried)
    for candidate in tried:
        regs = ", ".join(f"V={k.vec},H={k.held}: {k.registers} regs" for k in builds[candidate].kernels)
        print(f"{'FAIL' if candidate in reasons else 'ok  '} {candidate.name} ({regs or 'not compiled'})")
        if candidate in reasons:
            print(f"     {reasons[candidate]}")
    return 1 if reasons else 0


def _search(args: argparse.Namespace, fam_target: dict[str, int]) -> int:
    import torch

    if not torch.cuda.is_available():
        print("search times candidates on a GPU: none is visible here (use check or --emit on the CPU)")
        return 1
    from kernels.ch20.kernelgen import gpu_search

    policy = search.Policy(seed=args.seed, sample=args.sample, rung_s=args.rung_s, final_s=args.final_s)
    result, log_path = gpu_search.run(family(args.family), fam_target, policy, registry_path=args.registry,
                                      log_path=args.log, promote=not args.no_promote)
    print(result.log.format())
    print(f"search log: {log_path}")
    return 0 if result.winner is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "emit")  # ``--emit PATH ...`` alone, as the chapter's README promises
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list()
    try:
        fam_target = _target(family(args.family).target, args.target)
        named = _named(args, fam_target) if args.command in ("render", "emit") else None
    except ValueError as exc:
        parser.error(str(exc))
    if args.command == "render":
        if named is None:
            parser.error("render needs --params or --candidate")
        sys.stdout.write(render.render(named))
        return 0
    _default_arch()
    try:
        if args.command == "check":
            return _check(args.family, fam_target)
        if args.command == "search":
            return _search(args, fam_target)
        done = emit.emit(family(args.family), args.emit, named=named, target=fam_target, hardware=args.hardware,
                         registry_path=args.registry)
    except (emit.EmitError, registry.RegistryError) as exc:
        print(f"kernelgen: {exc}", file=sys.stderr)
        return 1
    regs = ", ".join(f"V={k.vec},H={k.held}: {k.registers} registers" for k in done.built.kernels)
    print(f"emitted {done.candidate.name} ({done.why}) to {done.path}: launcher {family(args.family).launcher}; "
          f"compiled for {os.environ.get('AIPERF_CUDA_ARCH') or 'this GPU'} with no spills ({regs}); verified on "
          f"the CPU by its host emulation")
    return 0


def _default_arch() -> None:
    """Compile for sm_90a where no GPU says otherwise (CI's machines have nvcc but no GPU)."""
    if os.environ.get("AIPERF_CUDA_ARCH"):
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["AIPERF_CUDA_ARCH"] = "sm_90a"


if __name__ == "__main__":
    sys.exit(main())
