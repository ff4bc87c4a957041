#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`faultline help COMMAND`: every command has its manual page, the page
documents every option the command takes, and its text is the installed
man page's (both come from doc/NAME.scd)."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import case, Skip  # noqa: E402
import tap  # noqa: E402

faultline = sys.argv[1]
man_dir = sys.argv[2] if len(sys.argv) > 2 else ""  # the built roff pages, "" if none


def run(*args):
    return subprocess.run([faultline, *args], capture_output=True, text=True, timeout=30)


def commands():
    out = run("--help").stdout
    names = re.findall(r"^  ([a-z][a-z-]*) ", out, re.M)
    assert len(names) >= 6, out
    return [n for n in names if n != "help"]


@case("test_help_of_every_command_is_its_manual_page")
def _():
    for cmd in commands():
        r = run("help", cmd)
        assert r.returncode == 0, (cmd, r.stderr)
        assert r.stdout.startswith(f"NAME\n    faultline-{cmd} - "), (cmd, r.stdout[:200])
        for section in ("SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "SEE ALSO"):
            assert f"\n{section}\n" in r.stdout, (cmd, section)
        assert run("help", f"faultline-{cmd}").stdout == r.stdout
    for page in ("faultline", "libfaultline"):
        r = run("help", page)
        assert r.returncode == 0 and r.stdout.startswith(f"NAME\n    {page} - "), r.stdout[:200]


@case("test_every_option_a_command_lists_is_in_its_manual_page")
def _():
    for cmd in commands():
        usage = run(cmd, "--help")
        assert usage.returncode == 0, (cmd, usage.stderr)
        page = run("help", cmd).stdout
        missing = sorted(set(re.findall(r"--[a-z][a-z-]*", usage.stdout)) -
                         set(re.findall(r"--[a-z][a-z-]*", page)))
        assert not missing, f"faultline-{cmd}: the manual page lacks {missing}"


@case("test_help_text_is_the_man_page_text")
def _():
    if not man_dir or not os.path.isdir(man_dir):
        raise Skip("the man pages were not built (no scdoc: scripts/setup.sh installs it)")
    if not shutil.which("man"):
        raise Skip("man is not installed (Debian package man-db)")

    def words(text):
        # man hyphenates words at line ends; the help text keeps lines
        return re.findall(r"\S+", re.sub(r"[\u2010\u2011-]\n\s*", "", text))

    env = dict(os.environ, MANWIDTH="200", LC_ALL="C.UTF-8")
    pages = sorted(f for f in os.listdir(man_dir) if re.fullmatch(r"[a-z-]+\.[13]", f))
    assert len(pages) == len(commands()) + 2, pages
    for f in pages:
        m = subprocess.run(["man", "-l", os.path.join(man_dir, f)], capture_output=True,
                           text=True, env=env, timeout=60)
        assert m.returncode == 0, m.stderr
        body = "\n".join(m.stdout.strip("\n").split("\n")[1:-1])  # no header, footer
        h = run("help", f.rsplit(".", 1)[0]).stdout
        a, b = words(h), words(body)
        if a != b:
            i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
            raise AssertionError(f"{f}: help and man differ at word {i}: "
                                 f"{' '.join(a[i:i + 8])!r} vs {' '.join(b[i:i + 8])!r}")


@case("test_help_of_an_unknown_page_is_refused_listing_the_pages")
def _():
    r = run("help", "nope")
    assert r.returncode == 2 and "nope" in r.stderr and "faultline-migrate" in r.stderr, r.stderr
    r = run("help")
    assert r.returncode == 0 and "help" in r.stdout, r.stdout


tap.run()
