"""The container command of the fake RunPod's pods in tests.

It runs the agent, exactly as the trial image's CMD does, except in a pod
created with ``TEST_STRAY_POD=1``: that one just sleeps, standing in for a
pod that no running trial owns (a leftover the cleanup must find).
"""

import os
import runpy
import time

if os.environ.get("TEST_STRAY_POD"):
    while True:
        time.sleep(1)
runpy.run_module("hpo.agent", run_name="__main__", alter_sys=True)
