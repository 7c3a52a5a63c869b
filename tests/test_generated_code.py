"""The checked-in protobuf code is what grpcio-tools generates from proto/ today."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO


def test_generated_protobuf_code_is_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_proto.py"), "--check"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
