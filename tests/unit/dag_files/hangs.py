"""A crossdock DAG file that never finishes importing."""

import time

from crossdock import DAG

time.sleep(3600)
dag = DAG("never_seen")
