"""``crossdock config get|list``: what crossdock reads, after env overrides and defaults.

``list`` shows secrets masked (passwords inside URLs, secret-named keys; see
:mod:`crossdock.config_secrets`), since its output ends up in terminals, tickets and
screen shares. ``get`` names one key explicitly and prints its real value.
"""

from __future__ import annotations

import sys

from crossdock.config_unknown import did_you_mean, suggestion
from crossdock.configuration import DEFAULTS, ConfigError, conf, config_file_path, default_config_text


def get(args) -> int:
    section, key = args.section.lower(), args.key.lower()
    if not conf.has_option(section, key) and key not in DEFAULTS.get(section, {}):
        if section in DEFAULTS:
            near = suggestion(key, DEFAULTS[section])
        else:
            near = suggestion(section, DEFAULTS)
            near = f"[{near}] {key}" if near else None
        raise ConfigError(f"[{section}] {key} is not a crossdock configuration key and is not set"
                          + did_you_mean(near))
    print(conf.get(section, key, fallback=""))
    return 0


def list_config(args) -> int:
    if args.defaults:
        sys.stdout.write(default_config_text())
        return 0
    from crossdock.config_secrets import mask_setting

    print(f"# config file: {config_file_path()}")
    print("# secrets are masked; 'crossdock config get SECTION KEY' prints one value as it is")
    for section, values in conf.as_dict().items():
        print(f"[{section}]")
        for key, value in values.items():
            print(f"{key} = {mask_setting(section, key, value)}")
        print()
    return 0
