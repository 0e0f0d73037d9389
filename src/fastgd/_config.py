"""``fastgd.show_config()``: what this installation is and can do."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from . import backends
from ._version import __version__


def config() -> dict[str, Any]:
    """Version, platform, each backend's availability (with the reason when not) and build."""
    info: dict[str, Any] = {
        "fastgd": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "FASTGD_BACKEND": os.environ.get("FASTGD_BACKEND", ""),
    }
    try:
        info["default_backend"] = backends.default_name()
    except Exception as exc:  # a forced backend that cannot load: report, don't fail
        info["default_backend"] = f"unavailable ({exc})"
    table: dict[str, dict[str, Any]] = {}
    for name in backends.NAMES:
        ok, reason = backends.available(name)
        entry: dict[str, Any] = {"available": ok}
        if not ok:
            entry["reason"] = reason
        else:
            module = backends.load(name)
            if hasattr(module, "info"):
                entry.update(module.info())
        table[name] = entry
    info["backends"] = table
    return info


def show_config() -> None:
    """Print :func:`config` in a readable form."""
    info = config()
    print(f"fastgd {info['fastgd']} on Python {info['python']}, {info['platform']}, {info['cpus']} CPUs")
    forced = info["FASTGD_BACKEND"]
    print(f"default backend: {info['default_backend']}" + (f" (forced by FASTGD_BACKEND={forced})" if forced else ""))
    for name, entry in info["backends"].items():
        if not entry["available"]:
            print(f"  {name:<6} unavailable: {entry['reason']}")
            continue
        details = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "available")
        print(f"  {name:<6} available" + (f": {details}" if details else ""))
