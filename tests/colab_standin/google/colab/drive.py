"""A stand-in for `google.colab.drive`, for the tests only.

`mount` has the real function's signature. It mounts nothing: it appends one JSON line per call to the file named
by the environment variable COLAB_STANDIN_LOG, and raises ValueError (as the real one does when the mount fails)
when COLAB_STANDIN_MOUNT_ERROR is set.
"""
import json
import os


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    with open(os.environ["COLAB_STANDIN_LOG"], "a") as log:
        log.write(json.dumps({"call": "drive.mount", "mountpoint": mountpoint}) + "\n")
    error = os.environ.get("COLAB_STANDIN_MOUNT_ERROR")
    if error:
        raise ValueError(error)
