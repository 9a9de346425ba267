"""paho-mqtt interop scenarios over MQTT 3.1.1 (see paho_common.py)."""

import functools

import paho_common as common

SCENARIOS = {name: functools.partial(scenario, protocol=common.V311)
             for name, scenario in common.SHARED_SCENARIOS.items()}

if __name__ == "__main__":
    common.main(SCENARIOS, __doc__)
