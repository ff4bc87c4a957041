# SPDX-License-Identifier: MIT
"""The smallest TAP runner for the command-line tests: register cases with
@case("name"), then run() prints the plan and one line per case."""
import sys

_cases = []


class Skip(Exception):
    """Raise Skip("why") in a case the machine cannot run."""


def case(name):
    def wrap(fn):
        _cases.append((name, fn))
        return fn
    return wrap


def run():
    print(f"1..{len(_cases)}", flush=True)
    failed = 0
    for i, (name, fn) in enumerate(_cases, 1):
        try:
            fn()
            print(f"ok {i} - {name}", flush=True)
        except Skip as why:
            print(f"ok {i} - {name} # SKIP {why}", flush=True)
        except Exception as e:  # report, and go on with the next case
            failed += 1
            print(f"not ok {i} - {name}")
            print(f"# {type(e).__name__}: {e}", flush=True)
    sys.exit(1 if failed else 0)
